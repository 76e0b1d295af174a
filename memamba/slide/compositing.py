"""Slide regions composited on white: OpenSlide returns transparent pixels outside the scanned area."""

from __future__ import annotations

import numpy as np


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite non-premultiplied RGBA uint8 [h, w, 4] onto white; returns RGB uint8 [h, w, 3]."""
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    alpha = alpha.astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)
    return ((rgb + 127) // 255).astype(np.uint8)
