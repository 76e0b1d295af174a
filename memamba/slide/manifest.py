"""Tiling manifest: one CSV row per slide (status, patch count, mpp, time) from the coords h5 files."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from memamba.io import atomic_output
from memamba.slide.coords_h5 import read_coords

MANIFEST_COLUMNS: tuple[str, ...] = (
    "slide",
    "status",
    "n_patches",
    "slide_mpp",
    "mpp_source",
    "target_mpp",
    "seconds",
)


def write_manifest(coords_h5_paths: Iterable[str | os.PathLike[str]], out_csv: str | os.PathLike[str]) -> None:
    """Write `out_csv` with MANIFEST_COLUMNS, one row per coords h5 in the given order; atomic.

    slide_mpp (µm/px) and mpp_source are empty for slides that failed before their mpp was known.
    """
    rows = []
    for path in coords_h5_paths:
        coords, attrs = read_coords(path)
        rows.append(
            {
                "slide": attrs.get("name", Path(path).stem),
                "status": attrs.get("status"),
                "n_patches": len(coords),
                "slide_mpp": attrs.get("slide_mpp"),
                "mpp_source": attrs.get("mpp_source"),
                "target_mpp": attrs.get("target_mpp"),
                "seconds": attrs.get("seconds"),
            }
        )
    with atomic_output(out_csv) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
