"""Tile one slide: resolve mpp, segment tissue, lay the patch grid at a target mpp, write coords h5 + QC."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memamba import __version__
from memamba.errors import InputError
from memamba.naming import slide_key
from memamba.slide.coords_h5 import write_coords
from memamba.slide.grid import patch_grid
from memamba.slide.mpp_table import MPP_RANGE, MppEntry, read_mpp_table
from memamba.slide.open import open_slide, resolve_mpp
from memamba.slide.patches import read_level
from memamba.slide.qc import write_failure_png, write_qc_png
from memamba.slide.thumbnail import read_thumbnail
from memamba.slide.tissue import TissueParams, tissue_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileResult:
    """Outcome of tiling one slide; `slide` is its key, `slide_mpp` in µm/px, `seconds` wall time."""

    slide: str
    status: str
    n_patches: int
    slide_mpp: float | None
    mpp_source: str | None
    seconds: float


@dataclass(frozen=True)
class _SlideView:
    """What tiling needs from an open slide, read before the handle is closed."""

    mpp: float
    mpp_source: str
    overview: np.ndarray
    overview_downsample: float
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]


def tile_slide(
    slide_path: str | os.PathLike[str],
    out_h5: str | os.PathLike[str],
    *,
    target_mpp: float = 0.5,
    patch_size: int = 256,
    overlap: int = 0,
    min_tissue_fraction: float = 0.5,
    tissue: TissueParams | None = None,
    mpp_override: float | None = None,
    mpp_table: str | os.PathLike[str] | None = None,
    default_mpp: float | None = None,
    qc_png: str | os.PathLike[str] | None = None,
    record_failures: bool = False,
) -> TileResult:
    """Write the tissue patch grid of `slide_path` to `out_h5` (and a QC PNG to `qc_png` if given).

    Patches are `patch_size` px at `target_mpp` µm/px, i.e. round(patch_size * target_mpp / slide_mpp)
    level-0 px, stepping by patch_size - overlap target px; a patch is kept when at least
    `min_tissue_fraction` of it is tissue. A slide without tissue gets an empty grid and status
    "no_tissue". A slide that cannot be opened or read, or has no usable mpp, raises InputError and writes
    nothing; with `record_failures` it gets an empty grid with status "failed: <reason>" instead.
    The slide's mpp comes from `resolve_mpp` (override, forced `mpp_table` row, metadata, objective
    power, `mpp_table` row, `default_mpp`); a bad mpp table raises InputError even with `record_failures`.
    """
    started = time.perf_counter()
    slide_path = Path(slide_path)
    key = slide_key(slide_path.name)
    params = tissue or TissueParams()
    _check_arguments(slide_path, target_mpp, patch_size, overlap, min_tissue_fraction)
    table_entry = read_mpp_table(mpp_table).get(key) if mpp_table is not None else None
    attrs: dict[str, Any] = {
        "name": key,
        "target_mpp": target_mpp,
        "target_patch_size": patch_size,
        "target_magnification": 10.0 / target_mpp,
        "overlap": overlap,
        "min_tissue_fraction": min_tissue_fraction,
        **params.as_attrs(),
        "memamba_version": __version__,
    }
    try:
        view = _read_slide(slide_path, mpp_override, table_entry, default_mpp)
    except InputError as err:
        if not record_failures:
            raise
        return _record_failure(out_h5, qc_png, attrs, str(err), started)

    scale = target_mpp / view.mpp
    patch_size_level0 = round(patch_size * scale)
    step_level0 = round((patch_size - overlap) * scale)
    if scale < 1:
        log.warning(
            "%s: target %.4g µm/px is finer than the slide's %.4g; patches are upsampled", key, target_mpp, view.mpp
        )
    pixel_area_um2 = (view.mpp * view.overview_downsample) ** 2
    mask = tissue_mask(view.overview, params, pixel_area_um2=pixel_area_um2)
    coords, _ = patch_grid(
        mask, view.overview_downsample, view.level_dimensions[0], patch_size_level0, step_level0, min_tissue_fraction
    )
    status = "ok" if len(coords) else "no_tissue"
    log.info(
        "%s: %d patches of %d level-0 px (%s, mpp %.4g from %s)",
        key,
        len(coords),
        patch_size_level0,
        status,
        view.mpp,
        view.mpp_source,
    )
    if qc_png is not None:
        write_qc_png(qc_png, view.overview, mask, coords, patch_size_level0, view.overview_downsample)
    seconds = time.perf_counter() - started
    attrs.update(_read_level_attrs(view, patch_size_level0, scale))
    attrs.update(
        status=status,
        slide_mpp=view.mpp,
        mpp_source=view.mpp_source,
        seconds=seconds,
        patch_size_level0=patch_size_level0,
        level0_magnification=10.0 / view.mpp,
    )
    write_coords(out_h5, coords, attrs)
    return TileResult(key, status, len(coords), view.mpp, view.mpp_source, seconds)


def _record_failure(
    out_h5: str | os.PathLike[str],
    qc_png: str | os.PathLike[str] | None,
    attrs: dict[str, Any],
    reason: str,
    started: float,
) -> TileResult:
    """Write an empty grid with status "failed: <reason>" (and a PNG stating the reason)."""
    log.warning("%s: tiling failed, recording an empty grid: %s", attrs["name"], reason)
    seconds = time.perf_counter() - started
    if qc_png is not None:
        write_failure_png(qc_png, reason)
    status = f"failed: {reason}"
    write_coords(out_h5, np.zeros((0, 2), np.int64), {**attrs, "status": status, "seconds": seconds})
    return TileResult(attrs["name"], status, 0, None, None, seconds)


def _check_arguments(
    slide_path: Path, target_mpp: float, patch_size: int, overlap: int, min_tissue_fraction: float
) -> None:
    """InputError naming the slide for tiling settings that cannot work."""
    low, high = MPP_RANGE
    if not low <= target_mpp <= high:
        raise InputError(f"{slide_path}: target mpp {target_mpp} is outside {low}-{high} µm/px; use e.g. 0.5")
    if patch_size < 1:
        raise InputError(f"{slide_path}: patch size {patch_size} px must be >= 1; use e.g. 256")
    if not 0 <= overlap < patch_size:
        raise InputError(f"{slide_path}: overlap {overlap} px must lie in [0, patch size {patch_size})")
    if not 0.0 <= min_tissue_fraction <= 1.0:
        raise InputError(f"{slide_path}: min tissue fraction {min_tissue_fraction} must lie in [0, 1]")


def _read_slide(
    slide_path: Path, mpp_override: float | None, table_entry: MppEntry | None, default_mpp: float | None
) -> _SlideView:
    """Open the slide, resolve its mpp and read its overview; InputError on any failure."""
    with open_slide(slide_path) as slide:
        mpp, source = resolve_mpp(slide, override=mpp_override, table_entry=table_entry, default=default_mpp)
        overview, downsample = read_thumbnail(slide)
        return _SlideView(
            mpp,
            source,
            overview,
            downsample,
            tuple(slide.level_dimensions),
            tuple(float(value) for value in slide.level_downsamples),
        )


def _read_level_attrs(view: _SlideView, patch_size_level0: int, scale: float) -> dict[str, Any]:
    """CLAM's read-level attributes: the coarsest level not coarser than the target (within tolerance).

    `patch_size` is the patch side in px at that level; `downsample` is (x, y) level-0 px per level px.
    """
    level = read_level(view.level_downsamples, scale)
    (width0, height0), (width, height) = view.level_dimensions[0], view.level_dimensions[level]
    return {
        "patch_level": level,
        "patch_size": round(patch_size_level0 / view.level_downsamples[level]),
        "downsample": (width0 / width, height0 / height),
        "downsampled_level_dim": (width, height),
        "level_dim": (width, height),
    }
