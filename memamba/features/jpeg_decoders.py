"""JPEG decoders for raw slide tiles: nvJPEG on the GPU through torchvision (the GPU's hardware JPEG engines
on A100/H100-class cards; GPU lanes call nvJPEG's batched decode directly, memamba.features.nvjpeg_batched,
and keep this one for the tiles that call does not take) and libjpeg-turbo on CPU threads (simplejpeg).
Each decodes tiles of one pyramid level into uint8 [T, 3, h, w] RGB on its output device and flags the
tiles it cannot decode.

libjpeg's "replicate" chroma upsampling (libjpeg's non-fancy, merged upsampling) gives, on the H200's
hardware engines, the same pixels as nvJPEG bit for bit (benchmarks/RESULTS.md), so CPU threads can
decode part of a slide beside the GPU without changing a single feature; "fancy" upsampling is
libjpeg's default and OpenSlide's.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

from memamba.features.cuda_waits import HostMemoryInUse
from memamba.features.decode_worker import decode_into
from memamba.features.jpeg_tiles import JpegTiffPyramid

UPSAMPLING = ("fancy", "replicate")


def checked_upsampling(upsampling: str) -> str:
    """`upsampling` if it is one of UPSAMPLING; ValueError naming the valid ones otherwise."""
    if upsampling not in UPSAMPLING:
        raise ValueError(f"unknown chroma upsampling {upsampling!r}; valid: {', '.join(UPSAMPLING)}")
    return upsampling


class TileDecoder(Protocol):
    """Decodes tiles of one pyramid level into uint8 [T, 3, h, w] on `device`, with bool [T] undecodable
    (their pixels are unspecified)."""

    name: str
    device: torch.device

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> tuple[torch.Tensor, np.ndarray]: ...

    def close(self) -> None: ...


class NvjpegDecoder:
    """nvJPEG through torchvision: one batched call per batch of tiles (torchvision serialises calls within
    a process), one by one after a failed batch so that a single bad tile is found."""

    name = "nvjpeg"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        from torchvision.io import ImageReadMode, decode_jpeg

        layout = pyramid.levels[level]
        shape = (3, layout.tile_height, layout.tile_width)
        if len(tile_ids) == 0:
            return torch.zeros((0, *shape), dtype=torch.uint8, device=self.device), np.zeros(0, dtype=bool)
        streams = pyramid.read_streams(level, tile_ids)
        tensors = list(torch.from_numpy(streams.buffer).split(streams.lengths.tolist()))
        try:
            images: list[torch.Tensor | None] = list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            images = [_decode_one(tensor, self.device) for tensor in tensors]
        bad = np.array([image is None or tuple(image.shape) != shape for image in images], dtype=bool)
        if bad.any():
            blank = torch.zeros(shape, dtype=torch.uint8, device=self.device)
            images = [blank if failed else image for image, failed in zip(images, bad, strict=True)]
        return torch.stack(images), bad

    def close(self) -> None:
        """Nothing to release (torchvision keeps one decoder per process)."""


class SharedPool:
    """A pool of `threads` decode threads shared by several decoders; shut down when the last one closes."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="jpeg")
        self._users = 0
        self._counting = threading.Lock()

    def join(self) -> SharedPool:
        with self._counting:
            self._users += 1
        return self

    def leave(self) -> None:
        with self._counting:
            self._users -= 1
            last = self._users == 0
        if last:
            self.executor.shutdown()


class LibjpegDecoder:
    """libjpeg-turbo (simplejpeg) on the threads of `pool` (default: its own, of `threads` threads): each
    thread reads its share of the tiles and decodes them straight into one host buffer (pinned when
    `device` is CUDA), copied to `device` at once."""

    name = "libjpeg"

    def __init__(
        self,
        device: torch.device,
        threads: int = 1,
        upsampling: str = "fancy",
        pool: SharedPool | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.upsampling = checked_upsampling(upsampling)
        self.pool = (pool or SharedPool(threads)).join()
        self.threads = self.pool.threads
        self._pinned: torch.Tensor | None = None
        self._copying = HostMemoryInUse()

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        layout = pyramid.levels[level]
        host = self._host_buffer((len(tile_ids), layout.tile_height, layout.tile_width, 3))
        pixels = host.numpy()
        bad = np.zeros(len(tile_ids), dtype=bool)
        chunk = max(1, -(-len(tile_ids) // self.threads))
        fast = self.upsampling == "replicate"
        work = [
            self.pool.executor.submit(
                decode_into, pyramid, level, tile_ids[start : start + chunk], pixels[start:], bad[start:], fast
            )
            for start in range(0, len(tile_ids), chunk)
        ]
        for done in work:
            done.result()
        if self.device.type != "cuda":
            return host.permute(0, 3, 1, 2), bad
        tiles = host.to(self.device, non_blocking=True)
        self._copying.mark()
        return tiles.permute(0, 3, 1, 2), bad

    def _host_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """uint8 host memory of `shape`: fresh on the CPU (the caller keeps it); on CUDA one pinned buffer,
        reused once the previous copy to the GPU is done."""
        if self.device.type != "cuda":
            return torch.empty(shape, dtype=torch.uint8)
        self._copying.wait()
        needed = int(np.prod(shape))
        if self._pinned is None or self._pinned.numel() < needed:
            self._pinned = torch.empty(needed, dtype=torch.uint8, pin_memory=True)
        return self._pinned[:needed].view(shape)

    def close(self) -> None:
        """Leave the pool (its threads stop when no decoder uses it any more)."""
        self.pool.leave()


def cpu_threads_available() -> int:
    """CPU cores this process may run on (its affinity, as set by SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _decode_one(tensor: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """One torchvision decode of a JPEG stream tensor on `device`, None when it fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None
