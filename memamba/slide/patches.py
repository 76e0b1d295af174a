"""Read patches at a true target resolution: from the best pyramid level, resized to the target size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import openslide

from memamba.slide.compositing import rgba_on_white

READ_LEVEL_TOLERANCE = 0.05
"""A pyramid level may be this much (relative) coarser than the target and still be the read level."""


def read_level(level_downsamples: Sequence[float], downsample: float) -> int:
    """Index of the coarsest level whose downsample is <= `downsample` (within READ_LEVEL_TOLERANCE).

    Reading from there and shrinking never upsamples; level 0 when every level is coarser.
    """
    limit = downsample * (1 + READ_LEVEL_TOLERANCE)
    return max(index for index, value in enumerate(level_downsamples) if value <= limit or index == 0)


def read_patch(
    slide: openslide.OpenSlide, corner: tuple[int, int], patch_size_level0: int, out_size: int
) -> np.ndarray:
    """RGB uint8 [out_size, out_size, 3] of the square of `patch_size_level0` level-0 px at level-0 `corner`.

    The square is read from `read_level` for downsample patch_size_level0 / out_size, composited on white
    where transparent and resized by area averaging, so a 40x slide without a 20x level still gives
    true 20x patches.
    """
    level = read_level(slide.level_downsamples, patch_size_level0 / out_size)
    side = max(1, round(patch_size_level0 / slide.level_downsamples[level]))
    rgba = np.asarray(slide.read_region((int(corner[0]), int(corner[1])), level, (side, side)))
    rgb = rgba_on_white(rgba)
    if side != out_size:
        rgb = cv2.resize(rgb, (out_size, out_size), interpolation=cv2.INTER_AREA)
    return rgb
