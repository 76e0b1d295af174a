"""Features manifest: one row per slide (status, patches, blanks, reader, device, seconds) from the h5 files."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from memamba.io import atomic_output

COLUMNS = ("slide", "status", "n_patches", "blank_patches", "reader", "device", "seconds", "patches_per_second")


def features_manifest_rows(paths: Iterable[Path]) -> list[dict[str, object]]:
    """Manifest rows of the features files `paths` (attributes only: the features are not read)."""
    import h5py

    from memamba.features.features_h5 import plain_value

    rows = []
    for path in paths:
        with h5py.File(path, "r") as handle:
            attrs = {name: plain_value(value) for name, value in handle.attrs.items()}
            n_patches = int(handle["features"].shape[0])
        seconds = float(attrs.get("seconds", 0.0))
        rows.append(
            {
                "slide": Path(path).stem,
                "status": attrs.get("status", ""),
                "n_patches": n_patches,
                "blank_patches": int(attrs.get("blank_patches", 0)),
                "reader": attrs.get("reader", ""),
                "device": attrs.get("device", ""),
                "seconds": round(seconds, 3),
                "patches_per_second": round(n_patches / seconds, 1) if seconds > 0 else 0.0,
            }
        )
    return rows


def write_features_manifest(paths: Iterable[Path], out_csv: Path) -> None:
    """Write the manifest of the features files `paths` to `out_csv` (atomically)."""
    rows = features_manifest_rows(paths)
    with atomic_output(out_csv) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
