"""Batch sources for the encoder: uint8 patches [B, 3, S, S] with blank flags [B], from either reader.

- OpenSlide: a DataLoader over `SlidePatchDataset` (workers each with their own handle, pinned memory).
- Tiles: `TilePatchReader`s (decode on the device) in background threads; patches whose tiles cannot
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


def tile_batches(
    readers: TilePatchReader | list[TilePatchReader], fallback: SlidePatchDataset, batch_size: int
) -> Iterator[Batch]:
    """Batches of the slide in order, prepared in background threads on the readers' device: with K
    readers (each with its own file handle and decoder), thread k reads batches k, k + K, k + 2K, …"""
    readers = readers if isinstance(readers, list) else [readers]
    step = len(readers)
    sources = [
        prefetch(_tile_batches(reader, fallback, batch_size, first, step), reader.device, depth=2)
        for first, reader in enumerate(readers)
    ]
    return _interleave(sources)


def _tile_batches(
    reader: TilePatchReader, fallback: SlidePatchDataset, batch_size: int, first: int = 0, step: int = 1
) -> Iterator[Batch]:
    try:
        for start in range(first * batch_size, len(reader), step * batch_size):
            indices = np.arange(start, min(start + batch_size, len(reader)))
            yield _reread_failed(*reader.read_batch(indices), indices, fallback)
    finally:
        reader.close()


def _interleave(sources: list[Iterator[Batch]]) -> Iterator[Batch]:
    """One item of each source in turn until one runs out (the rest then hold nothing more)."""
    try:
        while True:
            for source in sources:
                item = next(source, None)
                if item is None:
                    return
                yield item
    finally:
        for source in sources:
            source.close()


def _reread_failed(
    images: torch.Tensor, failed: torch.Tensor, indices: np.ndarray, fallback: SlidePatchDataset
) -> Batch:
    """(images, blank flags [B]) with the `failed` patches (bool [B]) re-read through `fallback`."""
    blank = torch.zeros(len(indices), dtype=torch.bool)
    for position in np.flatnonzero(failed.numpy()):
        image, blank[position] = fallback[int(indices[position])]
        images[position] = image.to(images.device)
    return images, blank
