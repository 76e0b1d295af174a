"""Collapse a slide-level table (one row per slide) to per-patient labels and omic values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.tables import conflicting_rows, describe_rows

PATIENT_EXTRA_COLUMNS: tuple[str, ...] = ("oncotree_code", "site")
"""Per-patient descriptive columns copied (first slide's value) into patients.parquet when present
(`site`, the tissue source site, is derived from TCGA case ids when absent)."""


def patient_labels(table: pd.DataFrame) -> pd.DataFrame:
    """One row per patient of a slide-level table, in order of first appearance.

    Columns: case_id, survival_months (float, months), censorship (int, 1 = censored), then
    PATIENT_EXTRA_COLUMNS present. Labels must already agree between a patient's slides
    (`read_mcat_table` checks it).
    """
    grouped = table.groupby("case_id", sort=False)
    patients = grouped[["survival_months", "censorship"]].first()
    patients["survival_months"] = patients["survival_months"].astype(np.float64)
    patients["censorship"] = patients["censorship"].astype(np.int64)
    extras = [column for column in PATIENT_EXTRA_COLUMNS if column in table.columns]
    if extras:
        patients = patients.join(grouped[extras].first())
    return patients.reset_index()


def patient_omics(table: pd.DataFrame, columns: list[str], path: str | Path) -> pd.DataFrame:
    """`columns` (float64, raw) indexed by case_id, one row per patient in order of first appearance.

    A patient whose slides carry different omic values raises InputError naming `path`, the patient,
    the first differing column and its CSV lines.
    """
    conflicts = conflicting_rows(table, columns)
    if conflicts.any():
        case = table["case_id"].iloc[int(np.flatnonzero(conflicts)[0])]
        rows = (table["case_id"] == case).to_numpy()
        values = table.loc[rows, columns].to_numpy(dtype=np.float64)
        differs = ~((values == values[0]) | (np.isnan(values) & np.isnan(values[0]))).all(axis=0)
        column = columns[int(np.flatnonzero(differs)[0])]
        raise InputError(
            f"{path}: column '{column}' differs between slides of patient {case} at "
            f"{describe_rows(table, rows)}; genomic values are per patient, make them agree"
        )
    omics = table.drop_duplicates("case_id", keep="first")[["case_id", *columns]]
    return omics.set_index("case_id")
