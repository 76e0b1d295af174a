"""Batch sources for the encoder: uint8 patches [B, 3, S, S] with blank flags [B], from either reader.

- OpenSlide: a DataLoader over `SlidePatchDataset` (workers each with their own handle, pinned memory),
  reading small pieces that are joined into encoder batches.
- Tiles: `TilePatchReader` lanes (nvJPEG on the GPU, libjpeg in decode processes or CPU threads) in
  background threads; patches whose tiles cannot be decoded are re-read through OpenSlide (fresh
  handle, another level, else blank and counted).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator

import numpy as np
import torch

from memamba.features.cuda_waits import wait_for_stream
from memamba.features.dataset import SlidePatchDataset
from memamba.features.tile_reader import TilePatchReader

Batch = tuple[torch.Tensor, torch.Tensor]
"""(uint8 images [B, 3, S, S], bool blank flags [B])."""


BATCHES_AHEAD_PER_LANE = 4
"""Batches per lane that may be claimed and not yet consumed. Batches are handed over in order, so a
batch finished early waits for a slower lane's earlier one (a libjpeg lane's batch takes 2.5 times an
nvJPEG lane's), and this bounds how far ahead the others may read. H200, round robin: 4 against 2, reader
alone 10.5k against 9.6k patches/s, end to end 8.4k against 8.3k (benchmarks/RESULTS.md, sixth pass).
GPU memory: one batch of 128 patches of 224 px is 19 MB."""
BAND_ROWS = 8
"""Patch heights of a band in the tiles reader's reading order (`reading_order`). A batch of 128 patches
then covers a block of 8 × 16 patches. At 40× (0.2525 µm/px, as most of TCGA) a 0.5-µm patch is 507 level-0
px, off the 256-px tile grid, so neighbouring patches share tiles, and each batch decodes each tile it
needs once: over a 100,000-px-wide round piece of tissue, batches of 128 rows in the grid's own row-major
order decode 5.9 tiles a patch, batches of 8-row bands 4.3 (4 rows: 4.5; 16: 4.3)."""
LANE_STREAM_PRIORITY = -1
"""CUDA stream priority of the lanes' streams (lower is higher). `torch.cuda.Stream` hands out the
streams of a fixed pool per priority in turn (32 a device), so after 32 lanes a lane's stream at the
default priority is an earlier one again, and can be the stream on which torch.compile records its CUDA
graphs (`encoding.COMPILE_MODE_CUDA`, at the default priority): a lane's work queued while a graph records
goes into the graph (H200: "CUDA error: invalid argument" in the lane, "tensor(s) in the cudagraph pool
not tracked as outputs" in the encoder). The high-priority pool's streams are never that stream; reading
at high priority was as fast (0.97-1.05x; benchmarks/RESULTS.md, thirteenth pass)."""
PIECES_PER_WORKER = 4
"""DataLoader workers read a slide in pieces, at least this many per worker, which the main process joins
into encoder batches. With a whole encoder batch per worker, a slide with fewer batches than workers (or
the last wave of batches) leaves workers idle: at batch 256, one worker read all of a 256-patch slide, at
half the speed of two (benchmarks/RESULTS.md)."""


def openslide_batches(
    dataset: SlidePatchDataset, device: torch.device, batch_size: int, num_workers: int
) -> Iterator[Batch]:
    """Batches of `dataset` in order, read by `num_workers` DataLoader workers (0: this process) in
    pieces of `piece_size` patches."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=piece_size(len(dataset), batch_size, num_workers),
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
    )
    pieces = ((images.to(device, non_blocking=True), blank) for images, blank in loader)
    return _joined(pieces, batch_size)


def piece_size(n_patches: int, batch_size: int, num_workers: int) -> int:
    """Patches a DataLoader worker reads at a time: small enough for PIECES_PER_WORKER pieces per worker,
    so that the workers finish together, and no smaller (each piece costs the main process a hand-over);
    at most `batch_size`, which `num_workers` = 0 reads whole."""
    if num_workers == 0:
        return batch_size
    return max(1, min(batch_size, -(-n_patches // (num_workers * PIECES_PER_WORKER))))


def _joined(pieces: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """`pieces` in order, joined and cut into batches of `batch_size` (the last one may be smaller)."""
    images: list[torch.Tensor] = []
    blanks: list[torch.Tensor] = []
    held = 0
    for piece_images, piece_blank in pieces:
        if not held and len(piece_images) == batch_size:
            yield piece_images, piece_blank
            continue
        images.append(piece_images)
        blanks.append(piece_blank)
        held += len(piece_images)
        while held >= batch_size:
            joined_images, joined_blank = torch.cat(images), torch.cat(blanks)
            yield joined_images[:batch_size], joined_blank[:batch_size]
            images, blanks = [joined_images[batch_size:]], [joined_blank[batch_size:]]
            held -= batch_size
    if held:
        yield torch.cat(images), torch.cat(blanks)


def reading_order(coords: np.ndarray, patch_size_level0: int) -> np.ndarray:
    """Order int64 [N] in which the tiles reader reads the patches at `coords` (level-0 corners [N, 2] of
    `patch_size_level0`-px patches): bands of BAND_ROWS patch heights from the top, each read column by
    column (x, then y; ties as listed), so that consecutive patches form compact blocks that share tiles."""
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    band = coords[:, 1] // (BAND_ROWS * max(1, patch_size_level0))
    return np.lexsort((coords[:, 1], coords[:, 0], band))


def tile_batches(
    readers: TilePatchReader | list[TilePatchReader],
    fallback: SlidePatchDataset,
    batch_size: int,
    order: np.ndarray | None = None,
) -> LaneBatches:
    """Batches of the slide's patches taken in `order` (int64 [N] rows of the readers' coords; default: as
    listed), delivered in that order, read by `readers` ("lanes", each with its own file handle and
    decoder, e.g. nvJPEG lanes beside libjpeg lanes) in background threads: each lane claims the next
    unread batch when it is free, so faster lanes read more; at most BATCHES_AHEAD_PER_LANE batches per
    lane are claimed and not yet consumed. A lane whose decoder prefetches (decode processes) claims the
    batch after the one it reads, so that its decoders start on it while it assembles this one; a lane
    whose reader has `batches_a_read` > 1 claims up to that many batches at once and reads them together.
    Lanes run on their own CUDA streams; a batch is handed over once its stream's work is done. The lanes
    start at the first batch asked for, or earlier through `LaneBatches.start`."""
    readers = readers if isinstance(readers, list) else [readers]
    return LaneBatches(readers, fallback, batch_size, order)


class LaneBatches:
    """A slide's batches read by lanes claiming batch numbers in turn; finished batches wait in `done`
    until their turn. Iterate once for the batches; `reading_done` is set once every lane has ended (all
    batches read, or the lanes stopped), when the consumer may still have batches to take."""

    def __init__(
        self, readers: list[TilePatchReader], fallback: SlidePatchDataset, batch_size: int, order: np.ndarray | None
    ) -> None:
        self.readers, self.fallback, self.batch_size = readers, fallback, batch_size
        self.n_patches = len(readers[0])
        self.order = np.arange(self.n_patches) if order is None else np.asarray(order, dtype=np.int64)
        self.n_batches = -(-self.n_patches // batch_size)
        self.claims = itertools.count()
        self.claiming = threading.Lock()
        self.ahead = threading.Semaphore(BATCHES_AHEAD_PER_LANE * len(readers))
        self.ready = threading.Condition()
        self.done: dict[int, Batch] = {}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.reading_done = threading.Event()
        self.lanes: list[threading.Thread] | None = None
        self.lanes_running = len(readers)
        self.starting = threading.Lock()

    def start(self) -> None:
        """Start the lanes, unless started or closed already."""
        with self.starting:
            if self.lanes is not None or self.stop.is_set():  # started, or being closed (which closes the readers)
                return
            self.lanes = [threading.Thread(target=self._lane, args=(reader,), daemon=True) for reader in self.readers]
            for lane in self.lanes:
                lane.start()

    def __iter__(self) -> Iterator[Batch]:
        self.start()
        try:
            for number in range(self.n_batches):
                with self.ready:
                    self.ready.wait_for(lambda number=number: number in self.done or self.errors)
                    if self.errors:
                        raise self.errors[0]
                    images, blank = self.done.pop(number)
                self.ahead.release()
                if images.device.type == "cuda":
                    images.record_stream(torch.cuda.current_stream(images.device))
                yield images, blank
        finally:
            self.close()

    def close(self) -> None:
        """Stop the lanes (each ends after the batch it reads) and wait for them; readers never started
        are closed here."""
        self.stop.set()
        with self.starting:
            lanes = self.lanes
            if lanes is None:
                self.lanes = []
        if lanes is None:
            self._close_readers()
            return
        for _ in lanes:
            self.ahead.release()
        for lane in lanes:
            lane.join(timeout=10)

    def _close_readers(self) -> None:
        for reader in self.readers:
            reader.close()
        self.reading_done.set()

    def _lane(self, reader: TilePatchReader) -> None:
        stream = lane_stream(reader.device) if reader.device.type == "cuda" else None
        try:
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                numbers = self._claims(reader.batches_a_read)
                while numbers:
                    following = self._claim(blocking=False) if reader.prefetches else None
                    parts = [self._indices(number) for number in numbers]
                    indices = np.concatenate(parts)
                    then = None if following is None else self._indices(following)
                    images, blank = _reread_failed(*reader.read_batch(indices, then), indices, self.fallback)
                    if stream is not None:
                        wait_for_stream(stream)
                    with self.ready:
                        ends = np.cumsum([len(part) for part in parts])
                        for number, end, part in zip(numbers, ends, parts, strict=True):
                            self.done[number] = images[end - len(part) : end], blank[end - len(part) : end]
                        self.ready.notify_all()
                    numbers = [following] if following is not None else self._claims(reader.batches_a_read)
        except BaseException as error:  # handed to the consumer, which re-raises it
            with self.ready:
                self.errors.append(error)
                self.ready.notify_all()
        finally:
            reader.close()
            with self.starting:
                self.lanes_running -= 1
                if self.lanes_running == 0:
                    self.reading_done.set()

    def _claims(self, most: int) -> list[int]:
        """The next unread batch numbers for a lane reading up to `most` at once: the first as `_claim`,
        the others only where they can be claimed without waiting; empty when all are read."""
        first = self._claim()
        numbers = [] if first is None else [first]
        while numbers and len(numbers) < most:
            extra = self._claim(blocking=False)
            if extra is None:
                break
            numbers.append(extra)
        return numbers

    def _claim(self, blocking: bool = True) -> int | None:
        """The next unread batch number once fewer than the allowed batches wait; None when all are read
        (or, not `blocking`, when as many batches wait as allowed: a lane claiming the batch after the one
        it holds must not wait for the consumer, which may be waiting for the one it holds)."""
        if self.stop.is_set() or not self.ahead.acquire(blocking=blocking):
            return None  # once stopped, a lane takes no permit: each one blocked already is released once
        with self.claiming:
            number = next(self.claims)
        return None if self.stop.is_set() or number >= self.n_batches else number

    def _indices(self, number: int) -> np.ndarray:
        """Rows of the coords in batch `number`."""
        return self.order[number * self.batch_size : (number + 1) * self.batch_size]


def lane_stream(device: torch.device) -> torch.cuda.Stream:
    """A CUDA stream for a lane on `device`: one of the high-priority pool (LANE_STREAM_PRIORITY), never the
    stream torch.compile's CUDA graphs record on."""
    return torch.cuda.Stream(device, priority=LANE_STREAM_PRIORITY)


def _reread_failed(
    images: torch.Tensor, failed: torch.Tensor, indices: np.ndarray, fallback: SlidePatchDataset
) -> Batch:
    """(images, blank flags [B]) with the `failed` patches (bool [B]) re-read through `fallback`."""
    blank = torch.zeros(len(indices), dtype=torch.bool)
    for position in np.flatnonzero(failed.numpy()):
        image, blank[position] = fallback[int(indices[position])]
        images[position] = image.to(images.device)
    return images, blank
