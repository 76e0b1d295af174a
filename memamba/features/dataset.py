"""Patch dataset: read square patches of one slide at level-0 coords, as uint8 images for an encoder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import openslide
import torch
from PIL import Image
from torch.utils.data import Dataset

from memamba.slide.compositing import rgba_on_white

logger = logging.getLogger(__name__)


class SlidePatchDataset(Dataset):
    """Patches of one slide: item i is (uint8 image [3, S, S], blank flag) for `coords[i]`.

    Each patch covers `patch_size_level0` level-0 pixels from its top-left (x, y). It is read from the
    pyramid level best suited to a `read_size` px patch (downsample `patch_size_level0 / read_size`),
    composited on white where the slide is transparent, then resized to `output_size` (S) px.
    Normalisation is left to the device. Each process (DataLoader worker) opens its own OpenSlide
    handle on first use. A read that fails is retried on a fresh handle, then on a fresh handle at a
    neighbouring pyramid level (the same area, resized); if that fails too the patch is all zeros and
    its blank flag is True.
    """

    def __init__(
        self,
        slide_path: Path,
        coords: np.ndarray,
        patch_size_level0: int,
        read_size: int,
        output_size: int,
    ) -> None:
        self.slide_path = Path(slide_path)
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        self.patch_size_level0 = int(patch_size_level0)
        self.read_size = int(read_size)
        self.output_size = int(output_size)
        self._slide: openslide.OpenSlide | None = None
        self._owner_pid: int | None = None
        self._level = 0
        self._level_patch_size = self.patch_size_level0

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        x, y = (int(value) for value in self.coords[index])
        for attempt, other_level in enumerate((False, False, True), start=1):
            try:
                return self._read_patch(x, y, other_level), False
            except openslide.OpenSlideError as error:
                logger.warning(
                    "%s: reading the patch at (%d, %d) failed (attempt %d of 3%s): %s",
                    self.slide_path,
                    x,
                    y,
                    attempt,
                    ", another level" if other_level else "",
                    error,
                )
                self._close()
        return torch.zeros((3, self.output_size, self.output_size), dtype=torch.uint8), True

    def __getstate__(self) -> dict:
        """Pickle without the OpenSlide handle, so a spawned worker opens its own."""
        state = self.__dict__.copy()
        state.update(_slide=None, _owner_pid=None)
        return state

    def _handle(self) -> openslide.OpenSlide:
        """This process's OpenSlide handle, opened on first use (a forked copy reopens)."""
        if self._slide is None or self._owner_pid != os.getpid():
            slide = openslide.OpenSlide(self.slide_path)
            downsample = self.patch_size_level0 / self.read_size
            self._level = slide.get_best_level_for_downsample(downsample)
            self._level_patch_size = max(1, round(self.patch_size_level0 / slide.level_downsamples[self._level]))
            self._slide, self._owner_pid = slide, os.getpid()
        return self._slide

    def _close(self) -> None:
        """Drop this process's handle (OpenSlide handles stay broken after an error)."""
        if self._slide is not None and self._owner_pid == os.getpid():
            self._slide.close()
        self._slide = self._owner_pid = None

    def _read_patch(self, x: int, y: int, other_level: bool = False) -> torch.Tensor:
        """uint8 [3, S, S] image of the patch whose level-0 top-left is (x, y), read from the best
        level or, with `other_level`, from the next coarser level (the next finer one on the coarsest)."""
        slide = self._handle()
        level, size = self._level, self._level_patch_size
        if other_level:
            if slide.level_count < 2:
                raise openslide.OpenSlideError("no other pyramid level to retry at")
            level = level + 1 if level + 1 < slide.level_count else level - 1
            size = max(1, round(self.patch_size_level0 / slide.level_downsamples[level]))
        rgb = rgba_on_white(np.asarray(slide.read_region((x, y), level, (size, size))))
        if rgb.shape[:2] != (self.output_size, self.output_size):
            image = Image.fromarray(rgb).resize((self.output_size, self.output_size), Image.Resampling.BILINEAR)
            rgb = np.array(image)
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
