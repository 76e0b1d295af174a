"""Per-slide mpp table: a CSV `slide,mpp[,force]` giving level-0 pixel sizes (µm/px) by slide key."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from memamba.errors import InputError
from memamba.naming import slide_key

MPP_RANGE: tuple[float, float] = (0.05, 20.0)
"""Plausible level-0 pixel sizes in µm/px; values outside come from broken metadata or typos."""

_TRUE = {"1", "true", "yes"}
_FALSE = {"", "0", "false", "no"}


@dataclass(frozen=True)
class MppEntry:
    """One row of the table: level-0 pixel size `mpp` (µm/px); `force` makes it win over metadata."""

    mpp: float
    force: bool = False


def read_mpp_table(path: str | os.PathLike[str]) -> dict[str, MppEntry]:
    """Read the table into {slide key: MppEntry}.

    Columns: `slide` (slide id or file name; the extension is dropped), `mpp` (µm/px, within MPP_RANGE)
    and optionally `force` (true/false/1/0/yes/no, empty = false). Any bad row raises InputError naming
    the file, the row and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mpp table; give a CSV with columns slide,mpp[,force]")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"slide", "mpp"} - set(reader.fieldnames or ())
        if missing:
            columns = ", ".join(sorted(missing))
            raise InputError(f"{path}: mpp table lacks column(s) {columns}; the header is slide,mpp[,force]")
        table: dict[str, MppEntry] = {}
        for row_number, row in enumerate(reader, start=2):
            key = slide_key((row["slide"] or "").strip())
            if not key:
                raise InputError(f"{path}: row {row_number}, column slide is empty; give the slide id")
            if key in table:
                raise InputError(f"{path}: row {row_number}: slide {key!r} is listed twice; keep one row")
            table[key] = MppEntry(_parse_mpp(path, row_number, row["mpp"]), _parse_force(path, row_number, row))
    return table


def _parse_mpp(path: Path, row_number: int, raw: str | None) -> float:
    """Column `mpp` of one row as µm/px within MPP_RANGE."""
    try:
        mpp = float(raw or "")
    except ValueError:
        mpp = math.nan
    low, high = MPP_RANGE
    if not low <= mpp <= high:
        raise InputError(
            f"{path}: row {row_number}, column mpp: {raw!r} is not a pixel size in {low}-{high} µm/px; fix the value"
        )
    return mpp


def _parse_force(path: Path, row_number: int, row: dict[str, str | None]) -> bool:
    """Optional column `force` of one row as a bool."""
    raw = (row.get("force") or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InputError(f"{path}: row {row_number}, column force: {raw!r} is not true/false; use true or false")
