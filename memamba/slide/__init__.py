"""Tile stage: open slides, resolve mpp, segment tissue, lay the patch grid, write coords h5 and QC images."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MppEntry": "memamba.slide.mpp_table",
    "TileResult": "memamba.slide.tile",
    "TissueParams": "memamba.slide.tissue",
    "open_slide": "memamba.slide.open",
    "patch_grid": "memamba.slide.grid",
    "read_coords": "memamba.slide.coords_h5",
    "read_mpp_table": "memamba.slide.mpp_table",
    "read_patch": "memamba.slide.patches",
    "read_thumbnail": "memamba.slide.thumbnail",
    "resolve_mpp": "memamba.slide.open",
    "tile_slide": "memamba.slide.tile",
    "tissue_mask": "memamba.slide.tissue",
    "write_coords": "memamba.slide.coords_h5",
    "write_manifest": "memamba.slide.manifest",
    "write_qc_png": "memamba.slide.qc",
}
"""Public names and their modules, imported on first use: a stage that needs one module (the features
stage reads coords files) does not pay for, or need the packages of, the others (OpenCV, SciPy)."""

__all__ = [
    "MppEntry",
    "TileResult",
    "TissueParams",
    "open_slide",
    "patch_grid",
    "read_coords",
    "read_mpp_table",
    "read_patch",
    "read_thumbnail",
    "resolve_mpp",
    "tile_slide",
    "tissue_mask",
    "write_coords",
    "write_manifest",
    "write_qc_png",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
