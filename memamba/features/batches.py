"""Batch sources for the encoder: uint8 patches [B, 3, S, S] with blank flags [B], from either reader.

- OpenSlide: a DataLoader over `SlidePatchDataset` (workers each with their own handle, pinned memory).
- Tiles: `TilePatchReader` (decode on the device) in a background thread; patches whose tiles cannot
  be decoded are re-read through OpenSlide (fresh handle, another level, else blank and counted).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from memamba.features.dataset import SlidePatchDataset
from memamba.features.tile_reader import TilePatchReader, prefetch

Batch = tuple[torch.Tensor, torch.Tensor]
"""(uint8 images [B, 3, S, S], bool blank flags [B])."""


def openslide_batches(
    dataset: SlidePatchDataset, device: torch.device, batch_size: int, num_workers: int
) -> Iterator[Batch]:
    """Batches of `dataset` in order, read by `num_workers` DataLoader workers (0: this process)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
    )
    for images, blank in loader:
        yield images.to(device, non_blocking=True), blank


def tile_batches(reader: TilePatchReader, fallback: SlidePatchDataset, batch_size: int) -> Iterator[Batch]:
    """Batches of `reader` in order, prepared in a background thread on the reader's device."""
    return prefetch(_tile_batches(reader, fallback, batch_size), reader.device)


def _tile_batches(reader: TilePatchReader, fallback: SlidePatchDataset, batch_size: int) -> Iterator[Batch]:
    try:
        for start in range(0, len(reader), batch_size):
            indices = np.arange(start, min(start + batch_size, len(reader)))
            images, failed = reader.read_batch(indices)
            blank = torch.zeros(len(indices), dtype=torch.bool)
            for position in np.flatnonzero(failed.numpy()):
                image, blank[position] = fallback[int(indices[position])]
                images[position] = image.to(images.device)
            yield images, blank
    finally:
        reader.close()
