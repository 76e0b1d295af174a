"""Read a mutation MAF (cBioPortal data_mutations.txt, GDC .maf) as binary patient × gene mutation status."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.barcodes import pick_samples
from memamba.genomics.delimited import read_text_table

log = logging.getLogger(__name__)

MAF_COLUMNS: tuple[str, ...] = ("Hugo_Symbol", "Tumor_Sample_Barcode", "Variant_Classification")
NOT_PROTEIN_ALTERING: frozenset[str] = frozenset(
    {
        "Silent",
        "Intron",
        "3'UTR",
        "5'UTR",
        "3'Flank",
        "5'Flank",
        "IGR",
        "RNA",
        "lincRNA",
        "Splice_Region",
        "Targeted_Region",
        "De_novo_Start_InFrame",
        "De_novo_Start_OutOfFrame",
    }
)
"""Variant classes that do not count as a mutation of the gene: silent, non-coding and flanking variants
(Splice_Region: outside the canonical splice site). Every other class (Missense_Mutation,
Nonsense_Mutation, Frame_Shift_*, In_Frame_*, Splice_Site, Translation_Start_Site, Nonstop_Mutation …)
marks the gene as mutated."""


def read_mutations(path: str | Path) -> pd.DataFrame:
    """Patients × genes float64: 1.0 if the patient's tumour sample carries a protein-altering variant of
    the gene (`NOT_PROTEIN_ALTERING` excluded), else 0.0.

    Rows: every patient with a sample in the MAF (any variant class: a sample listed only with silent
    variants was sequenced, so its genes are 0); one sample per patient (`pick_samples`). Columns: the
    genes with at least one counted variant in the chosen samples. Patients absent from the MAF are
    absent from the result (their mutation status is unknown, not 0).
    """
    table = read_text_table(path, what="mutation MAF", option="--mutations")
    frame = table.frame
    missing = [column for column in MAF_COLUMNS if column not in frame.columns]
    if missing:
        raise InputError(
            f"{table.path}: missing MAF column(s) {missing}; a MAF has columns "
            f"{list(MAF_COLUMNS)} (GDC and cBioPortal write them)"
        )
    for column in MAF_COLUMNS:
        empty = frame[column].isna()
        if empty.any():
            line = table.line(int(np.flatnonzero(empty.to_numpy())[0]))
            raise InputError(
                f"{table.path}: column '{column}' is empty at line {line} ({int(empty.sum())} "
                "rows); fill it or drop those rows"
            )
    samples = frame["Tumor_Sample_Barcode"].str.strip()
    chosen = pick_samples(samples.unique(), source=str(table.path))
    sample_to_case = {barcode: case for case, barcode in chosen.items()}
    counted = samples.isin(sample_to_case) & ~frame["Variant_Classification"].str.strip().isin(NOT_PROTEIN_ALTERING)
    hits = pd.DataFrame(
        {"case_id": samples[counted].map(sample_to_case), "gene": frame.loc[counted, "Hugo_Symbol"].str.strip()}
    ).drop_duplicates()
    status = pd.crosstab(hits["case_id"], hits["gene"]).clip(upper=1).astype(np.float64)
    status = status.reindex(index=list(chosen), fill_value=0.0)
    status.index.name, status.columns.name = "case_id", None
    log.info(
        "%s: %d patients, %d mutated genes (%d variants counted of %d)",
        table.path,
        len(status),
        status.shape[1],
        int(counted.sum()),
        len(frame),
    )
    return status
