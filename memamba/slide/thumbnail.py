"""Read a small RGB overview of a slide for tissue segmentation, never loading gigapixels at once."""

from __future__ import annotations

import math

import cv2
import numpy as np
import openslide

from memamba.errors import InputError
from memamba.slide.compositing import rgba_on_white
from memamba.slide.open import slide_name

MAX_THUMBNAIL_PIXELS = 4_000_000
"""Largest overview (pixels) that segmentation works on."""

BAND_PIXELS = 8_000_000
"""Largest region (pixels) read from the slide in one call while building the overview."""


def read_thumbnail(
    slide: openslide.OpenSlide, max_pixels: int = MAX_THUMBNAIL_PIXELS, *, band_pixels: int = BAND_PIXELS
) -> tuple[np.ndarray, float]:
    """Return an RGB overview uint8 [h, w, 3] and its downsample from level 0 (level-0 px per overview px).

    The overview is the largest pyramid level with at most `max_pixels`; if even the smallest level is
    bigger, that level is read in horizontal bands of about `band_pixels`, each shrunk by an integer
    factor (area averaging).
    Transparent pixels (outside the scanned area) become white. OpenSlide read errors (corrupt tiles)
    raise InputError naming the file.
    """
    sizes = [width * height for width, height in slide.level_dimensions]
    fitting = [level for level, size in enumerate(sizes) if size <= max_pixels]
    level = min(fitting) if fitting else slide.level_count - 1
    factor = 1 if fitting else math.ceil(math.sqrt(sizes[level] / max_pixels))
    try:
        overview = _read_level_shrunk(slide, level, factor, band_pixels)
    except openslide.OpenSlideError as err:
        raise InputError(
            f"{slide_name(slide)}: cannot read level {level} ({err}); the file is corrupt, re-export or replace it"
        ) from err
    return overview, float(slide.level_downsamples[level]) * factor


def _read_level_shrunk(slide: openslide.OpenSlide, level: int, factor: int, band_pixels: int) -> np.ndarray:
    """Level `level` shrunk by integer `factor` (right/bottom remainders dropped), read band by band."""
    width, height = slide.level_dimensions[level]
    downsample = slide.level_downsamples[level]
    out_width, out_height = max(width // factor, 1), max(height // factor, 1)
    rows_per_band = factor * max(1, band_pixels // (width * factor))
    bands = []
    for top in range(0, out_height * factor, rows_per_band):
        rows = min(rows_per_band, out_height * factor - top)
        region = slide.read_region((0, round(top * downsample)), level, (out_width * factor, rows))
        rgb = rgba_on_white(np.asarray(region))
        if factor > 1:
            rgb = cv2.resize(rgb, (out_width, rows // factor), interpolation=cv2.INTER_AREA)
        bands.append(rgb)
    return np.concatenate(bands, axis=0)
