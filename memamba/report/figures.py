"""Report images as embeddable PNG data URIs: training curves of a run's folds and scaled QC thumbnails."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def png_data_uri(png: bytes) -> str:
    """`data:image/png;base64,…` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def training_curves_png(curves: Mapping[int, pd.DataFrame]) -> bytes:
    """Two small panels (train loss, train C-index) with one line per fold; curves: fold -> curve.csv table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, c_axis) = plt.subplots(1, 2, figsize=(7.0, 2.6))
    for fold, curve in sorted(curves.items()):
        loss_axis.plot(curve["epoch"], curve["train_loss"], marker=".", label=f"fold {fold}")
        c_axis.plot(curve["epoch"], curve["train_c_index"], marker=".", label=f"fold {fold}")
    loss_axis.set(xlabel="epoch", ylabel="train loss")
    c_axis.set(xlabel="epoch", ylabel="train C-index")
    c_axis.legend(fontsize=7, frameon=False)
    for axis in (loss_axis, c_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    try:
        return _png_bytes(figure)
    finally:
        plt.close(figure)


def thumbnail_png(path: Path, max_px: int = 240) -> bytes:
    """The image at `path` scaled to fit max_px × max_px, as PNG bytes."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((max_px, max_px))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bytes(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
