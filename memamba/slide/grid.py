"""Patch grid over a slide: tissue fraction of every grid cell from a summed-area table of the mask."""

from __future__ import annotations

import cv2
import numpy as np


def patch_grid(
    mask: np.ndarray,
    mask_downsample: float,
    level0_size: tuple[int, int],
    patch_size_level0: int,
    step_level0: int,
    min_tissue_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-left level-0 corners int64 [N, 2] (x, y) of patches with enough tissue, and their fractions.

    mask: tissue mask bool [h, w] of an overview whose pixel covers `mask_downsample` level-0 px.
    level0_size: slide (width, height) in level-0 px; patches lie wholly inside it.
    patch_size_level0, step_level0: patch side and grid step in level-0 px (step < size overlaps).
    min_tissue_fraction: keep cells whose tissue fraction is >= this (and > 0).

    A cell at level-0 x covers mask columns [rint(x / ds), rint((x + size) / ds)) clipped to the mask,
    at least one column wide (rows alike). Patches come in row-major order (y, then x);
    fractions are float32 [N].
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D [h, w], got shape {mask.shape}")
    if patch_size_level0 < 1 or step_level0 < 1:
        raise ValueError(f"patch size and step must be >= 1 px, got {patch_size_level0}, {step_level0}")
    if not 0.0 <= min_tissue_fraction <= 1.0:
        raise ValueError(f"min_tissue_fraction must lie in [0, 1], got {min_tissue_fraction}")
    width, height = level0_size
    xs = np.arange(0, width - patch_size_level0 + 1, step_level0, dtype=np.int64)
    ys = np.arange(0, height - patch_size_level0 + 1, step_level0, dtype=np.int64)
    if xs.size == 0 or ys.size == 0 or mask.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)

    x0, x1 = _cell_bounds(xs, patch_size_level0, mask_downsample, mask.shape[1])
    y0, y1 = _cell_bounds(ys, patch_size_level0, mask_downsample, mask.shape[0])
    table = _summed_area_table(mask)
    tissue = (
        table[y1[:, None], x1[None, :]]
        - table[y0[:, None], x1[None, :]]
        - table[y1[:, None], x0[None, :]]
        + table[y0[:, None], x0[None, :]]
    )
    fraction = tissue / ((y1 - y0)[:, None] * (x1 - x0)[None, :])
    rows, cols = np.nonzero((fraction >= min_tissue_fraction) & (fraction > 0))
    coords = np.stack([xs[cols], ys[rows]], axis=1).astype(np.int64)
    return coords.reshape(-1, 2), fraction[rows, cols].astype(np.float32)


def _cell_bounds(starts: np.ndarray, size: int, downsample: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask index ranges [lo, hi) int64 of cells starting at level-0 `starts` (px) along one axis."""
    lo = np.clip(np.rint(starts / downsample), 0, length - 1).astype(np.int64)
    hi = np.clip(np.rint((starts + size) / downsample), 0, length).astype(np.int64)
    return lo, np.maximum(hi, lo + 1)


def _summed_area_table(mask: np.ndarray) -> np.ndarray:
    """Integral image int64 [h + 1, w + 1]: entry [i, j] counts true pixels of mask[:i, :j].

    OpenCV's integral (int32 up to 2**31 px, else float64, exact up to 2**53) is several times faster
    than two numpy cumulative sums.
    """
    depth = cv2.CV_32S if mask.size < 2**31 else cv2.CV_64F
    return cv2.integral(mask.astype(np.uint8), sdepth=depth).astype(np.int64)
