"""Survival labels per patient from a cBioPortal/GDC clinical patient table, for a chosen endpoint."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.barcodes import patient_id
from memamba.genomics.delimited import TextTable, read_text_table

log = logging.getLogger(__name__)

ENDPOINTS: dict[str, str] = {
    "os": "overall survival",
    "dss": "disease-specific survival",
    "pfi": "progression-free interval",
}
"""Endpoints, by the name used on the command line and in the config."""

ENDPOINT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "os": (("OS_MONTHS", "OS_STATUS"),),
    "dss": (("DSS_MONTHS", "DSS_STATUS"),),
    "pfi": (("PFI_MONTHS", "PFI_STATUS"), ("PFS_MONTHS", "PFS_STATUS")),
}
"""(months, status) column pairs of each endpoint in cBioPortal tables, first found wins (the TCGA
PanCancer Atlas studies name the progression-free interval PFS_*)."""

PATIENT_ID_COLUMNS: tuple[str, ...] = ("PATIENT_ID", "case_id", "bcr_patient_barcode", "submitter_id")
_STATUS = re.compile(r"^\s*([01])(?:\s*:.*)?$")


def check_endpoint(endpoint: str) -> str:
    """`endpoint` lower-cased if it is one of ENDPOINTS, else InputError."""
    if endpoint.lower() not in ENDPOINTS:
        raise InputError(f"endpoint must be one of {list(ENDPOINTS)}, got {endpoint!r}")
    return endpoint.lower()


def read_clinical(path: str | Path, endpoint: str = "os") -> tuple[pd.DataFrame, list[str]]:
    """(labels, unlabelled): labels has one row per patient with a label for `endpoint`.

    labels columns: case_id (12-character TCGA id), survival_months (float ≥ 0), censorship (1 = censored,
    0 = event). Status cells are cBioPortal codes ("1:DECEASED", "0:LIVING", "1:PROGRESSION" …) or 0/1;
    the leading digit is the event indicator. unlabelled: patients whose months or status is missing
    ("[Not Available]", empty). Raises InputError for a table without the endpoint's columns, a bad cell
    (file, column, line) or a patient listed twice with different labels.
    """
    endpoint = check_endpoint(endpoint)
    table = read_text_table(path, what="clinical patient table", option="--clinical")
    frame = table.frame
    id_column = next((column for column in PATIENT_ID_COLUMNS if column in frame.columns), None)
    if id_column is None:
        raise InputError(
            f"{table.path}: no patient id column (one of {list(PATIENT_ID_COLUMNS)}); pass the "
            "clinical *patient* table (data_clinical_patient.txt)"
        )
    pair = next((pair for pair in ENDPOINT_COLUMNS[endpoint] if set(pair) <= set(frame.columns)), None)
    if pair is None:
        wanted = " or ".join("/".join(pair) for pair in ENDPOINT_COLUMNS[endpoint])
        available = [e for e, pairs in ENDPOINT_COLUMNS.items() if any(set(p) <= set(frame.columns) for p in pairs)]
        raise InputError(
            f"{table.path}: endpoint '{endpoint}' ({ENDPOINTS[endpoint]}) needs columns {wanted}; "
            f"this table has endpoints {available}; choose one of those"
        )
    ids = frame[id_column].map(lambda value: None if pd.isna(value) else patient_id(value) or str(value).strip())
    _fail_if(table, ids.isna().to_numpy(), id_column, "is empty", "give every row a patient id", ids)
    months = pd.to_numeric(frame[pair[0]], errors="coerce")
    _fail_if(
        table,
        (months.isna() & frame[pair[0]].notna()).to_numpy(),
        pair[0],
        "is not a number",
        "months must be numeric",
        ids,
    )
    _fail_if(
        table,
        (months < 0).to_numpy() | np.isinf(months.to_numpy()),
        pair[0],
        "is negative or infinite",
        "survival must be finite months ≥ 0",
        ids,
    )
    status = frame[pair[1]].map(_event)
    _fail_if(
        table,
        (status.isna() & frame[pair[1]].notna()).to_numpy(),
        pair[1],
        "is not a status code",
        "use '1:…' (event) or '0:…' (censored), or 1/0",
        ids,
    )
    labelled = months.notna() & status.notna()
    labels = pd.DataFrame(
        {
            "case_id": ids,
            "survival_months": months.astype(np.float64),
            "censorship": 1 - status.fillna(0).astype(np.int64),
        }
    )
    unlabelled = sorted(set(ids[~labelled]) - set(ids[labelled]))
    labels = labels[labelled.to_numpy()]
    _check_repeats(table, labels)
    labels = labels.drop_duplicates("case_id").reset_index(drop=True)
    log.info("%s: %s labels for %d patients (%d without)", table.path, endpoint, len(labels), len(unlabelled))
    return labels, unlabelled


def _event(cell: object) -> float:
    if pd.isna(cell):
        return np.nan
    match = _STATUS.match(str(cell))
    return np.nan if match is None else float(match.group(1))


def _fail_if(table: TextTable, mask: np.ndarray, column: str, problem: str, fix: str, ids: pd.Series) -> None:
    if mask.any():
        positions = np.flatnonzero(mask)
        shown = ", ".join(f"{table.line(p)} ({ids.iloc[p]})" for p in positions[:5])
        raise InputError(f"{table.path}: column '{column}' {problem} at line(s) {shown} ({len(positions)} rows); {fix}")


def _check_repeats(table: TextTable, labels: pd.DataFrame) -> None:
    grouped = labels.groupby("case_id", sort=False)[["survival_months", "censorship"]]
    differs = (grouped.transform("nunique") > 1).any(axis=1)
    if differs.any():
        case = labels["case_id"][differs].iloc[0]
        lines = [table.line(int(position)) for position in labels.index[labels["case_id"] == case]]
        raise InputError(
            f"{table.path}: patient {case} is listed with different labels (lines {lines}); keep one row per patient"
        )
