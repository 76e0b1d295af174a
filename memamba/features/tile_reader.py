"""Decode-on-device patch reader: raw JPEG tiles decoded in batches (the GPU's JPEG engines or nvJPEG on
CUDA, libjpeg on the CPU), assembled into patches and resized on the same device.

The OpenSlide reader spends most of its time in libjpeg on the CPU; here the CPU only reads tile bytes,
and the GPU decodes. Patches match `SlidePatchDataset`'s (same level choice, white outside the slide,
bilinear antialiased resize) within JPEG decoder and resize rounding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from memamba.features.jpeg_decoders import TileDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid
from memamba.features.patch_resampling import MosaicResampler

logger = logging.getLogger(__name__)

_WHITE = 255


class _TileGrid(NamedTuple):
    """The tiles of a batch of B patches: level pixel `origins` int64 [B, 2], the patches' offsets into
    their first tile (`offset_x`, `offset_y`, [B]), the tile rows and columns a patch spans, `slots` int64
    [B, rows, cols] into `unique_ids` (the batch's tile numbers, sorted; −1 for outside the level)."""

    origins: np.ndarray
    offset_x: np.ndarray
    offset_y: np.ndarray
    n_cols: int
    n_rows: int
    slots: np.ndarray
    unique_ids: np.ndarray

    @property
    def valid_ids(self) -> np.ndarray:
        return self.unique_ids[self.unique_ids >= 0]


class TilePatchReader:
    """Batches of patches of one slide read straight from its JPEG tiles.

    Like `SlidePatchDataset`: patch i covers `patch_size_level0` level-0 px from `coords[i]`, is read
    at the level best suited to `read_size` px and resized to `output_size` (S) px.
    `read_batch(indices)` returns (uint8 [B, 3, S, S] on `device`, bool [B] failed): a patch is failed
    when one of its tiles cannot be decoded (the caller re-reads it another way).
    `decoder` (memamba.features.jpeg_decoders) delivers decoded tiles to `device`; default: libjpeg on
    one thread. The reader owns `pyramid` and `decoder` and closes both.
    `matrix_resize`: crop and resize by matrix products (`MosaicResampler`; on tensor cores on CUDA),
    not by indexing and `interpolate`; default: on CUDA.
    `batches_a_read`: encoder batches its lane (`batches.tile_batches`) reads at once, one decode for all
    their tiles; default 1.
    """

    batches_a_read: int = 1

    def __init__(
        self,
        pyramid: JpegTiffPyramid,
        coords: np.ndarray,
        patch_size_level0: int,
        read_size: int,
        output_size: int,
        device: torch.device,
        decoder: TileDecoder | None = None,
        matrix_resize: bool | None = None,
    ) -> None:
        from memamba.features.jpeg_decoders import LibjpegDecoder

        self.pyramid = pyramid
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        self.level = pyramid.best_level(patch_size_level0 / read_size)
        layout = pyramid.levels[self.level]
        self.size = max(1, round(patch_size_level0 / layout.downsample))
        self.output_size = int(output_size)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._origins = np.floor(self.coords / layout.downsample).astype(np.int64)
        self.decoder = decoder or LibjpegDecoder(self.device)
        if matrix_resize is None:
            matrix_resize = self.device.type == "cuda"
        resampling = matrix_resize and self.size != self.output_size
        self.resampler = MosaicResampler(self.size, self.output_size, self.device) if resampling else None

    @property
    def slide_path(self) -> Path:
        return self.pyramid.path

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def prefetches(self) -> bool:
        """Whether `read_batch(..., then=...)` sends the next batch's tiles to the decoder ahead."""
        return bool(getattr(self.decoder, "prefetches", False))

    def read_batch(self, indices: np.ndarray, then: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [B, 3, S, S] on the device, bool [B] failed) of the patches `indices`; `then`: the patches
        of the next call, whose tiles a prefetching decoder starts on before this batch is assembled."""
        layout = self.pyramid.levels[self.level]
        grid = self._tile_grid(indices)
        following = self._tile_grid(then).valid_ids if then is not None and self.prefetches else None
        tiles, bad_tiles = self._decode(grid.valid_ids, following)
        tile_w, tile_h = layout.tile_width, layout.tile_height
        white = torch.full((1, 3, tile_h, tile_w), _WHITE, dtype=torch.uint8, device=self.device)
        if grid.unique_ids[0] < 0:
            tiles = torch.cat([white, tiles])
            bad_tiles = np.concatenate([[False], bad_tiles])
        batch = len(grid.origins)
        failed = torch.from_numpy(bad_tiles[grid.slots].reshape(batch, -1).any(axis=1))
        if self.resampler is not None:
            return self._resampled(tiles, grid, layout.width, layout.height), failed
        (slots,) = self._on_device(grid.slots)
        mosaic = tiles[slots].permute(0, 3, 1, 4, 2, 5).reshape(batch, 3, grid.n_rows * tile_h, grid.n_cols * tile_w)
        patches = self._crop(mosaic, grid.offset_x, grid.offset_y, grid.origins, layout.width, layout.height)
        return self._resize(patches), failed

    def _tile_grid(self, indices: np.ndarray) -> _TileGrid:
        """Which tiles the patches `indices` cover, and where the patches lie in them."""
        layout = self.pyramid.levels[self.level]
        origins = self._origins[np.asarray(indices)]
        size, tile_w, tile_h = self.size, layout.tile_width, layout.tile_height
        first_col, first_row = origins[:, 0] // tile_w, origins[:, 1] // tile_h
        offset_x, offset_y = origins[:, 0] - first_col * tile_w, origins[:, 1] - first_row * tile_h
        n_cols = int((-(-(offset_x + size) // tile_w)).max())
        n_rows = int((-(-(offset_y + size) // tile_h)).max())
        cols = first_col[:, None, None] + np.arange(n_cols)[None, None, :]
        rows = first_row[:, None, None] + np.arange(n_rows)[None, :, None]
        inside = (cols >= 0) & (cols < layout.tiles_across) & (rows >= 0) & (rows < layout.tiles_down)
        tile_ids = np.where(inside, rows * layout.tiles_across + cols, -1)
        unique_ids, slots = np.unique(tile_ids, return_inverse=True)
        return _TileGrid(origins, offset_x, offset_y, n_cols, n_rows, slots.reshape(tile_ids.shape), unique_ids)

    def _decode(self, tile_ids: np.ndarray, then: np.ndarray | None) -> tuple[torch.Tensor, np.ndarray]:
        """(uint8 [T, 3, th, tw] on the device, bool [T] undecodable) of the tiles `tile_ids`; `then`: the
        tiles of the next call, for a prefetching decoder."""
        if then is None:
            tiles, bad = self.decoder.decode(self.pyramid, self.level, tile_ids)
        else:
            tiles, bad = self.decoder.decode(self.pyramid, self.level, tile_ids, then=then)
        for index in np.flatnonzero(bad):
            logger.warning("%s: tile %d of level %d cannot be decoded", self.slide_path, tile_ids[index], self.level)
        return tiles.to(self.device, non_blocking=True), bad

    def close(self) -> None:
        """Release the decoder and close the slide file."""
        self.decoder.close()
        self.pyramid.close()

    def _resampled(self, tiles: torch.Tensor, grid: _TileGrid, width: int, height: int) -> torch.Tensor:
        """uint8 [B, 3, S, S] patches of `grid` from its decoded `tiles` [T, 3, th, tw] (`grid.slots` into
        them), by `resampler`; where a patch reaches beyond the level's `width` × `height` px, white."""
        batch, (tile_h, tile_w) = len(grid.origins), tiles.shape[-2:]
        left, top = grid.origins[:, 0] - grid.offset_x, grid.origins[:, 1] - grid.offset_y
        slots, offset_x, offset_y, left, top = self._on_device(grid.slots, grid.offset_x, grid.offset_y, left, top)
        rows, cols = grid.n_rows * tile_h, grid.n_cols * tile_w
        mosaic = torch.empty((batch, rows, 3, cols), dtype=self.resampler.dtype, device=self.device)
        mosaic.view(batch, grid.n_rows, tile_h, 3, grid.n_cols, tile_w).copy_(tiles[slots].permute(0, 1, 4, 3, 2, 5))
        if self._reaches_beyond(grid.origins, width, height):
            mosaic.masked_fill_(self._outside(left, top, cols, rows, width, height)[:, :, None], _WHITE)
        return self.resampler(mosaic, offset_x, offset_y)

    def _reaches_beyond(self, origins: np.ndarray, width: int, height: int) -> bool:
        """Whether a patch at level px `origins` [B, 2] reaches beyond the level's `width` × `height` px."""
        size = self.size
        return bool(
            (origins < 0).any() or (origins[:, 0] + size > width).any() or (origins[:, 1] + size > height).any()
        )

    def _outside(
        self, left: torch.Tensor, top: torch.Tensor, cols: int, rows: int, width: int, height: int
    ) -> torch.Tensor:
        """bool [B, rows, cols]: which px of `cols` × `rows`-px windows at level px (`left`, `top`) (int64 [B],
        on the device) lie outside the level's `width` × `height` px."""
        x = left[:, None] + torch.arange(cols, device=self.device)
        y = top[:, None] + torch.arange(rows, device=self.device)
        return ((x < 0) | (x >= width))[:, None, :] | ((y < 0) | (y >= height))[:, :, None]

    def _on_device(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        """int64 copies of `arrays` on the device; to CUDA in one copy from page-locked memory (a blocking
        copy would first wait for all work queued on the lane's stream)."""
        flat = torch.from_numpy(np.concatenate([np.asarray(array, dtype=np.int64).ravel() for array in arrays]))
        on_device = flat.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else flat
        parts = on_device.split([np.size(array) for array in arrays])
        return [part.view(np.shape(array)) for part, array in zip(parts, arrays, strict=True)]

    def _crop(
        self,
        mosaic: torch.Tensor,
        offset_x: np.ndarray,
        offset_y: np.ndarray,
        origins: np.ndarray,
        width: int,
        height: int,
    ) -> torch.Tensor:
        """[B, 3, size, size] windows of `mosaic` at the per-patch offsets, white outside the level."""
        size, batch = self.size, len(origins)
        if not (offset_x.any() or offset_y.any()) and mosaic.shape[-1] == mosaic.shape[-2] == size:
            patches = mosaic
        else:
            span = torch.arange(size, device=self.device)
            offsets_x, offsets_y = self._on_device(offset_x, offset_y)
            rows, cols = offsets_y[:, None] + span, offsets_x[:, None] + span
            picks = torch.arange(batch, device=self.device)[:, None, None]
            patches = mosaic[picks, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self._reaches_beyond(origins, width, height):
            left, top = self._on_device(origins[:, 0], origins[:, 1])
            patches = patches.masked_fill(self._outside(left, top, size, size, width, height)[:, None], _WHITE)
        return patches

    def _resize(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, 3, size, size] uint8 → [B, 3, S, S] uint8, bilinear with antialiasing (as PIL's resize)."""
        if self.size == self.output_size:
            return patches
        resized = torch.nn.functional.interpolate(
            patches.float(),
            size=(self.output_size, self.output_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        return resized.round_().clamp_(0, 255).to(torch.uint8)
