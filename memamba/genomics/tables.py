"""Read and validate MCAT/PORPOISE-style genomic tables (one row per slide, labels in months)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.clinical import ENDPOINTS, check_endpoint
from memamba.genomics.groups import OMIC_SUFFIXES

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("case_id", "slide_id", "survival_months", "censorship")
NAN_POLICIES: tuple[str, ...] = ("fail", "impute")
_SHOWN_ROWS = 5


def read_mcat_table(path: str | Path, *, nan_policy: str = "fail", endpoint: str = "os") -> pd.DataFrame:
    """Read an MCAT/PORPOISE table: rows = slides, labels `survival_months` (≥ 0) and `censorship` (0/1).

    endpoint "os" reads `survival_months`/`censorship`; "dss" and "pfi" read `survival_months_{endpoint}`/
    `censorship_{endpoint}` (SurvPath's metadata tables) into `survival_months`/`censorship`.

    A leading unnamed index column is dropped. Omic columns (`*_rnaseq`, `*_cnv`, `*_mut`) must be
    numeric; with nan_policy="fail" an empty cell in one raises, with "impute" it is kept as NaN and
    later filled per fold with the training patients' median (`memamba.cohort.preprocess.fit_scaler`).
    The returned frame keeps the CSV row order (position i = CSV line i + 2). Raises InputError naming
    the file, the column and the first offending CSV lines.
    """
    path = Path(path)
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be one of {list(NAN_POLICIES)}, got {nan_policy!r}")
    table = _select_endpoint(_read_csv(path), path, check_endpoint(endpoint))
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {missing}; an MCAT table has one row per slide with "
            f"columns {list(REQUIRED_COLUMNS)} plus *_rnaseq/*_cnv/*_mut omic columns"
        )
    _check_ids(table, path)
    table["survival_months"] = _numeric(table, "survival_months", path, "a follow-up time in months")
    survival = table["survival_months"]
    _fail_rows(table, (survival < 0) | np.isinf(survival), path, "survival_months",
               "is negative or infinite", "survival must be finite months ≥ 0")
    table["censorship"] = _censorship(table, path)
    _check_consistent_labels(table, path)
    _check_omics(table, path, nan_policy)
    return table


def omic_columns(columns: list[str] | pd.Index) -> list[str]:
    """The columns whose names end with an omic suffix (`_rnaseq`, `_cnv`, `_mut`), in table order."""
    return [column for column in columns if str(column).endswith(OMIC_SUFFIXES)]


def describe_rows(table: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    """Name the first offending rows: "CSV lines 3 (TCGA-…), 9 (TCGA-…) and 4 more"."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = ", ".join(
        f"{position + 2} ({table['case_id'].iloc[position]})" if "case_id" in table.columns
        else str(position + 2)
        for position in positions[:_SHOWN_ROWS]
    )
    more = f" and {len(positions) - _SHOWN_ROWS} more" if len(positions) > _SHOWN_ROWS else ""
    return f"CSV line{'s' if len(positions) > 1 else ''} {shown}{more}"


def conflicting_rows(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Bool [rows]: rows whose `columns` differ from the first row of the same `case_id` (NaN == NaN)."""
    if not columns:
        return np.zeros(len(table), dtype=bool)
    first = table.groupby("case_id", sort=False)[columns].transform("first").to_numpy(dtype=np.float64)
    values = table[columns].to_numpy(dtype=np.float64)
    same = (first == values) | (np.isnan(first) & np.isnan(values))
    return ~same.all(axis=1)


def _select_endpoint(table: pd.DataFrame, path: Path, endpoint: str) -> pd.DataFrame:
    if endpoint == "os":
        return table
    columns = [f"survival_months_{endpoint}", f"censorship_{endpoint}"]
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise InputError(
            f"{path}: endpoint '{endpoint}' ({ENDPOINTS[endpoint]}) needs column(s) {absent}; "
            "use endpoint 'os' or a table with those labels (e.g. SurvPath's metadata)"
        )
    table["survival_months"], table["censorship"] = table[columns[0]], table[columns[1]]
    return table


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: genomic table not found; pass the MCAT-style CSV with --table")
    try:
        table = pd.read_csv(path, dtype={"case_id": "str", "slide_id": "str"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not a readable CSV table ({first_line}); export it as CSV") from None
    if len(table.columns) and str(table.columns[0]).startswith("Unnamed: 0"):
        table = table.drop(columns=table.columns[0])
    if table.empty:
        raise InputError(f"{path}: the table has no rows; it needs one row per slide")
    return table.reset_index(drop=True)


def _fail_rows(table: pd.DataFrame, mask: pd.Series | np.ndarray, path: Path, column: str,
               problem: str, fix: str) -> None:
    if np.asarray(mask, dtype=bool).any():
        raise InputError(f"{path}: column '{column}' {problem} at {describe_rows(table, mask)}; {fix}")


def _check_ids(table: pd.DataFrame, path: Path) -> None:
    for column in ("case_id", "slide_id"):
        blank = table[column].isna() | (table[column].str.strip() == "")
        _fail_rows(table, blank, path, column, "is empty", "fill it or drop those rows")
        table[column] = table[column].str.strip()
    repeated = table["slide_id"].duplicated(keep=False)
    _fail_rows(table, repeated, path, "slide_id", "repeats a slide",
               "list each slide once (a patient's slides share one case_id)")


def _numeric(table: pd.DataFrame, column: str, path: Path, meaning: str) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
    _fail_rows(table, values.isna(), path, column, "is empty or not a number", f"it must be {meaning}")
    return values


def _censorship(table: pd.DataFrame, path: Path) -> pd.Series:
    values = _numeric(table, "censorship", path, "0 (event) or 1 (censored)")
    _fail_rows(table, ~values.isin([0.0, 1.0]), path, "censorship", "is not 0 or 1",
               "use 1 = censored, 0 = event (the MCAT convention)")
    return values.astype(np.int64)


def _check_consistent_labels(table: pd.DataFrame, path: Path) -> None:
    labels = ["survival_months", "censorship"]
    conflicts = conflicting_rows(table, labels)
    if conflicts.any():
        case = table["case_id"].iloc[int(np.flatnonzero(conflicts)[0])]
        rows = (table["case_id"] == case).to_numpy()
        raise InputError(
            f"{path}: columns {labels} disagree between slides of patient {case} at "
            f"{describe_rows(table, rows)}; a patient's slides must share one label"
        )


def _check_omics(table: pd.DataFrame, path: Path, nan_policy: str) -> None:
    omics = omic_columns(table.columns)
    for column in omics:
        if not pd.api.types.is_numeric_dtype(table[column]):
            values = pd.to_numeric(table[column], errors="coerce")
            _fail_rows(table, values.isna() & table[column].notna(), path, column, "is not a number",
                       "omic columns must be numeric")
            table[column] = values
    table[omics] = table[omics].astype(np.float64)
    infinite = np.isinf(table[omics].to_numpy())
    if infinite.any():
        first = omics[int(np.flatnonzero(infinite.any(axis=0))[0])]
        _fail_rows(table, np.isinf(table[first]), path, first, "is infinite", "use finite values")
    empty = table[omics].isna().to_numpy()
    if not empty.any():
        return
    first = omics[int(np.flatnonzero(empty.any(axis=0))[0])]
    if nan_policy == "fail":
        _fail_rows(
            table, table[first].isna(), path, first,
            f"is empty ({int(empty.sum())} empty omic cells in {int(empty.any(axis=0).sum())} columns)",
            "fill them, drop those rows, or use nan_policy='impute' (training-fold median)",
        )
    log.warning("%s: %d empty omic cells (first in column %s at %s) will be imputed with the training "
                "fold's median", path, int(empty.sum()), first, describe_rows(table, table[first].isna()))
