"""QC images of tiling: overview with tissue contours and patch rectangles, or the failure reason."""

from __future__ import annotations

import os
import textwrap

import cv2
import numpy as np

from memamba.io import atomic_output

MAX_QC_SIDE = 1024
"""Longest side (px) of a QC image; larger overviews are shrunk."""

TISSUE_BGR = (0, 160, 0)
PATCH_BGR = (200, 60, 0)


def write_qc_png(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    mask: np.ndarray,
    coords: np.ndarray,
    patch_size_level0: int,
    mask_downsample: float,
) -> None:
    """Write a PNG of overview `rgb` [h, w, 3] with the contours of `mask` [h, w] (green) and each patch
    of `coords` [N, 2] (level-0 px, side `patch_size_level0`) as a blue rectangle; atomic.
    """
    scale = min(1.0, MAX_QC_SIDE / max(rgb.shape[:2]))
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    image = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small_mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, TISSUE_BGR, 2)
    level0_to_qc = scale / mask_downsample
    side = patch_size_level0 * level0_to_qc
    for x, y in np.asarray(coords).reshape(-1, 2) * level0_to_qc:
        cv2.rectangle(image, (round(x), round(y)), (round(x + side) - 1, round(y + side) - 1), PATCH_BGR, 1)
    _write_png(path, image)


def write_failure_png(path: str | os.PathLike[str], reason: str) -> None:
    """Write a small white PNG stating why the slide could not be tiled; atomic."""
    ascii_reason = reason.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    lines = textwrap.wrap(ascii_reason, width=60) or [""]
    image = np.full((24 * len(lines) + 16, 640, 3), 255, np.uint8)
    for row, line in enumerate(lines):
        cv2.putText(image, line, (8, 28 + 24 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 200), 1, cv2.LINE_AA)
    _write_png(path, image)


def _write_png(path: str | os.PathLike[str], bgr: np.ndarray) -> None:
    """Encode BGR uint8 [h, w, 3] as PNG at `path` through a temporary file."""
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_output(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
