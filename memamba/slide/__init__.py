"""Tile stage: open slides, resolve mpp, segment tissue, lay the patch grid, write coords h5 and QC images."""

from memamba.slide.coords_h5 import read_coords, write_coords
from memamba.slide.grid import patch_grid
from memamba.slide.manifest import write_manifest
from memamba.slide.mpp_table import MppEntry, read_mpp_table
from memamba.slide.open import open_slide, resolve_mpp
from memamba.slide.patches import read_patch
from memamba.slide.qc import write_qc_png
from memamba.slide.thumbnail import read_thumbnail
from memamba.slide.tile import TileResult, tile_slide
from memamba.slide.tissue import TissueParams, tissue_mask

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
