"""Read gene × sample omic matrices (cBioPortal data_mrna_seq_v2_rsem.txt, data_cna.txt; Xena) per patient."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.barcodes import patient_id, pick_samples
from memamba.genomics.delimited import TextTable, numeric_block, read_text_table

log = logging.getLogger(__name__)

EXPRESSION_TRANSFORMS = ("none", "log2p1")
"""What is done to raw expression values: nothing, or log2(x + 1) (cBioPortal's RSEM file is not logged)."""


def read_gene_matrix(path: str | Path, *, what: str, option: str) -> pd.DataFrame:
    """Patients × genes float64 (NaN = missing), index = 12-character patient ids, columns = gene symbols.

    Layouts: gene × sample as cBioPortal writes it (first column `Hugo_Symbol`, annotation columns such
    as `Entrez_Gene_Id` or `Cytoband`, then one column per sample barcode `TCGA-XX-XXXX-01`) or as UCSC
    Xena writes it (first column `sample` or `gene`); or sample × gene (first column patient or sample
    barcodes, one column per gene, as SurvPath's rna_clean.csv). Gene symbols `A1BG|1` become `A1BG`;
    rows without a symbol are dropped; a repeated symbol keeps its first row (warning). One sample per
    patient is kept (`pick_samples`: primary tumour first). Values are returned as given (no transform).
    """
    table = read_text_table(path, what=what, option=option, typed=True)
    frame = table.frame
    samples = [column for column in frame.columns[1:] if patient_id(column) is not None]
    if samples:
        genes = _gene_symbols(frame.iloc[:, 0])
        keep = genes.notna() & ~genes.duplicated(keep="first")
        repeated = int((genes.notna() & genes.duplicated(keep="first")).sum())
        if repeated:
            log.warning("%s: %d repeated gene symbols; the first row of each is used", table.path, repeated)
        values = numeric_block(table, samples, labels=genes.fillna("?"), meaning=f"the {what} must be numeric")
        matrix = pd.DataFrame(values[keep.to_numpy()].T, index=samples, columns=genes[keep].to_list())
    else:
        matrix = _sample_rows(table, what)
    chosen = pick_samples(matrix.index, source=str(table.path))
    patients = pd.DataFrame(matrix.loc[list(chosen.values())].to_numpy(), index=list(chosen), columns=matrix.columns)
    patients.index.name = "case_id"
    log.info("%s: %d patients × %d genes", table.path, *patients.shape)
    return patients


def _gene_symbols(cells: pd.Series) -> pd.Series:
    symbols = cells.str.strip().str.split("|").str[0].str.strip()
    return symbols.where(symbols.notna() & (symbols != "") & (symbols != "?"))


def _sample_rows(table: TextTable, what: str) -> pd.DataFrame:
    frame = table.frame
    ids = frame.iloc[:, 0].astype(str).str.strip()
    if not ids.map(patient_id).notna().any():
        raise InputError(
            f"{table.path}: no TCGA barcode among the column names or in the first column of the {what}; "
            "pass a gene × sample matrix (Hugo_Symbol, then TCGA-XX-XXXX-01 columns) or a sample × gene one"
        )
    genes = _gene_symbols(pd.Series(frame.columns[1:], dtype=str))
    values = numeric_block(table, list(frame.columns[1:]), labels=ids, meaning=f"the {what} must be numeric")
    keep = (genes.notna() & ~genes.duplicated(keep="first")).to_numpy()
    duplicated_rows = ids.duplicated(keep="first")
    if duplicated_rows.any():
        line = table.line(int(np.flatnonzero(duplicated_rows.to_numpy())[0]))
        raise InputError(
            f"{table.path}: sample '{ids[duplicated_rows].iloc[0]}' appears twice (line {line}); list each sample once"
        )
    return pd.DataFrame(values[:, keep], index=ids.to_list(), columns=genes[keep].to_list())


def transform_expression(matrix: pd.DataFrame, transform: str, source: str | Path) -> pd.DataFrame:
    """Patients × genes expression with `transform` (EXPRESSION_TRANSFORMS) applied; NaN stays NaN.

    "log2p1" needs non-negative values (raw counts or RSEM): a negative one, the mark of a matrix that is
    already logged or z-scored, raises InputError naming `source`, the gene and the patient.
    """
    if transform not in EXPRESSION_TRANSFORMS:
        raise InputError(f"unknown expression transform {transform!r}: use one of {', '.join(EXPRESSION_TRANSFORMS)}")
    if transform == "none":
        return matrix
    negative = np.argwhere(matrix.to_numpy() < 0)
    if len(negative):
        row, column = negative[0]
        raise InputError(
            f"{source}: gene {matrix.columns[column]}, patient {matrix.index[row]}: expression "
            f"{matrix.iat[row, column]:g} is negative, so the matrix is not raw counts: use expression "
            "transform none for logged or z-scored values"
        )
    return np.log2(matrix + 1)
