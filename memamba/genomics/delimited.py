"""Read the tab- or comma-separated text tables of cBioPortal and the GDC ('#' comment lines, NA markers)."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError

NA_STRINGS: tuple[str, ...] = (
    "",
    "NA",
    "NaN",
    "nan",
    "N/A",
    "null",
    "NULL",
    "[Not Available]",
    "[Not Applicable]",
    "[Unknown]",
    "[Not Evaluated]",
    "[Discrepancy]",
    "[Completed]",
    "[Not Reported]",
)
"""Cell texts read as missing values (cBioPortal and GDC clinical markers included)."""


@dataclass
class TextTable:
    """A text table with every cell as a string (missing cells NaN).

    frame: the cells; first_line: the file line number (1-based) of frame row 0, for error messages.
    """

    path: Path
    frame: pd.DataFrame
    first_line: int

    def line(self, position: int) -> int:
        """File line number of frame row `position`."""
        return self.first_line + position


def read_text_table(path: str | Path, *, what: str, option: str, typed: bool = False) -> TextTable:
    """Read `path` (tab- or comma-separated, optionally .gz) skipping leading '#' lines.

    Cells are strings, or with `typed` the first column is a string and the others take pandas' inferred
    type (numbers parsed in C; a column with text stays strings, for `numeric_block` to report).
    what/option name the expected content and the command-line option in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; check the path given to {option}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            comments = 0
            header = handle.readline()
            while header.startswith("#"):
                comments += 1
                header = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the {what} ({error}); pass a text table") from None
    if not header.strip():
        raise InputError(f"{path}: the {what} has no header line; pass the file as downloaded")
    sep = "\t" if "\t" in header else ","
    first = next(csv.reader([header], delimiter=sep))[0]
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            skiprows=comments,
            dtype={first: str} if typed else str,
            na_values=list(NA_STRINGS),
            encoding="utf-8-sig",
            keep_default_na=False,
            low_memory=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not a readable {what} ({first}); pass the file as downloaded") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    if frame.empty:
        raise InputError(f"{path}: the {what} has no data rows")
    return TextTable(path=path, frame=frame, first_line=comments + 2)


def numeric_block(table: TextTable, columns: list[str], *, labels: pd.Series, meaning: str) -> np.ndarray:
    """float64 [rows, len(columns)] of string cells; a non-numeric cell raises InputError naming it.

    labels: what names a row in the message (a gene symbol, a patient id).
    """
    frame = table.frame[columns]
    text = [column for column in columns if not pd.api.types.is_numeric_dtype(frame[column])]
    if text:
        frame = frame.copy()
    for column in text:
        cells = frame[column]
        parsed = pd.to_numeric(cells, errors="coerce")
        bad = parsed.isna() & cells.notna()
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{table.path}: column '{column}' line {table.line(position)} ({labels.iloc[position]}) holds "
                f"{cells.iloc[position]!r}, not a number ({int(bad.sum())} such cells); {meaning}"
            )
        frame[column] = parsed
    return frame.to_numpy(dtype=np.float64)
