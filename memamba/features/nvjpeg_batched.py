"""nvJPEG's batched decode called directly (ctypes): one call decodes a whole batch of tiles into one
uint8 [T, 3, h, w] GPU tensor.

torchvision's `decode_jpeg` runs the same library and the same hardware JPEG engines, but takes and
returns one tensor per tile. Beside an encoder in the same process those per-tile objects cost the
decoding lane more than the decoding (benchmarks/RESULTS.md, fifth pass). Here a batch costs a few
numpy operations, the library call releases the GIL, and the decoded planes land straight in the batch
tensor. The library is the libnvjpeg that torchvision itself loaded, so pixels are the same bit for bit.

Tiles are checked before the engines write anything: a stream whose frame header is missing or gives
another size than the level's tiles goes to torchvision's decoder, which decodes or rejects it alone, so
no stream can make the engines write outside its tile.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
from pathlib import Path

import numpy as np
import torch

from memamba.features.cuda_waits import HostMemoryInUse
from memamba.features.jpeg_tiles import JpegTiffPyramid, TileStreams

logger = logging.getLogger(__name__)

_BACKEND_HARDWARE = 3
_OUTPUT_RGB = 3
_SUCCESS = 0
_MAX_COMPONENTS = 4
_SEQUENTIAL_FRAMES = (0xC0, 0xC1)
"""Start-of-frame markers of baseline and extended sequential Huffman JPEG: the engines' formats."""
_MAX_SEGMENTS = 64
PINNED_INPUT = True
"""Read tile streams into page-locked memory: nvJPEG copies each tile's stream to the GPU, and from
pageable memory every copy is staged by the calling CPU thread."""


class NvjpegUnavailable(RuntimeError):
    """libnvjpeg or its hardware backend cannot be used in this process."""


_library: ctypes.CDLL | None = None
_handles: dict[int, ctypes.c_void_p] = {}
_loading = threading.Lock()


def library_path() -> str | None:
    """Path of the libnvjpeg that torchvision's image extension loaded, else the system's, else None."""
    with contextlib.suppress(ImportError):
        import torchvision.io.image  # noqa: F401  (loads torchvision's image library, linked to libnvjpeg)
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            path = line.split()[-1]
            if Path(path).name.startswith("libnvjpeg"):
                return path
    return ctypes.util.find_library("nvjpeg")


def _load() -> ctypes.CDLL:
    """The process's libnvjpeg with the prototypes used here (loaded once)."""
    global _library
    if _library is None:
        path = library_path()
        if path is None:
            raise NvjpegUnavailable("libnvjpeg not found (torchvision without nvJPEG?)")
        library = ctypes.CDLL(path)
        pointer, size = ctypes.c_void_p, ctypes.c_size_t
        prototypes = {
            "nvjpegCreateEx": [ctypes.c_int, pointer, pointer, ctypes.c_uint, ctypes.POINTER(pointer)],
            "nvjpegJpegStateCreate": [pointer, ctypes.POINTER(pointer)],
            "nvjpegJpegStateDestroy": [pointer],
            "nvjpegDecodeBatchedInitialize": [pointer, pointer, ctypes.c_int, ctypes.c_int, ctypes.c_int],
            "nvjpegDecodeBatched": [pointer, pointer, pointer, ctypes.POINTER(size), pointer, pointer],
        }
        for name, arguments in prototypes.items():
            function = getattr(library, name)
            function.argtypes, function.restype = arguments, ctypes.c_int
        _library = library
    return _library


def _handle(device: torch.device) -> ctypes.c_void_p:
    """The process's nvJPEG handle with the hardware backend for `device` (created once)."""
    with _loading:
        library = _load()
        if device.index not in _handles:
            handle = ctypes.c_void_p()
            with torch.cuda.device(device):
                status = library.nvjpegCreateEx(_BACKEND_HARDWARE, None, None, 0, ctypes.byref(handle))
            if status != _SUCCESS:
                raise NvjpegUnavailable(f"nvJPEG hardware backend unavailable on {device} (status {status})")
            _handles[device.index] = handle
        return _handles[device.index]


def frame_sizes(streams: TileStreams) -> tuple[np.ndarray, np.ndarray]:
    """(height, width) int64 [T] of each stream's sequential-Huffman frame header; 0 where there is none
    (another kind of frame, a broken or truncated stream)."""
    buffer, starts, ends = streams.buffer, streams.starts, streams.starts + streams.lengths
    heights, widths = np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=np.int64)
    if len(buffer) < 4:  # no stream can hold a frame header (and an empty buffer has no byte to look at)
        return heights, widths
    at = starts + 2
    walking = (streams.lengths >= 4) & (buffer[np.minimum(starts, len(buffer) - 1)] == 0xFF)
    walking &= buffer[np.minimum(starts + 1, len(buffer) - 1)] == 0xD8
    for _ in range(_MAX_SEGMENTS):
        rows = np.flatnonzero(walking)
        if not len(rows):
            break
        place = at[rows]
        room = place + 9 <= ends[rows]
        walking[rows[~room]] = False
        rows, place = rows[room], place[room]
        lead, marker = buffer[place], buffer[place + 1]
        frame = (lead == 0xFF) & np.isin(marker, _SEQUENTIAL_FRAMES)
        heights[rows[frame]] = buffer[place[frame] + 5].astype(np.int64) * 256 + buffer[place[frame] + 6]
        widths[rows[frame]] = buffer[place[frame] + 7].astype(np.int64) * 256 + buffer[place[frame] + 8]
        fill = (lead == 0xFF) & (marker == 0xFF)
        with_length = ((marker >= 0xDB) & (marker <= 0xFE)) | (marker == 0xC4) | (marker == 0xCC)
        segment = (lead == 0xFF) & with_length
        walking[rows[~(fill | segment)]] = False
        length = buffer[place + 2].astype(np.int64) * 256 + buffer[place + 3]
        at[rows[fill]] += 1
        at[rows[segment]] = place[segment] + 2 + length[segment]
    return heights, widths


class BatchedNvjpegDecoder:
    """nvJPEG's hardware batched decode of a level's tiles into one uint8 [T, 3, h, w] tensor on `device`
    (decoded on the caller's current CUDA stream). Tiles it must not or cannot take go to `fallback`
    (torchvision's decoder), which decodes them one by one or flags them undecodable."""

    name = "nvjpeg"

    def __init__(self, device: torch.device, fallback: object) -> None:
        self.device = torch.device(device)
        self.fallback = fallback
        self._handle = _handle(self.device)
        self._state: _State | None = None
        self._reading = HostMemoryInUse()

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        layout = pyramid.levels[level]
        height, width = layout.tile_height, layout.tile_width
        self._reading.wait()  # this thread's scratch memory, which the next read reuses
        tiles = torch.empty((len(tile_ids), 3, height, width), dtype=torch.uint8, device=self.device)
        bad = np.zeros(len(tile_ids), dtype=bool)
        if len(tile_ids) == 0:
            return tiles, bad
        streams = pyramid.read_streams(level, tile_ids, pinned=PINNED_INPUT)
        heights, widths = frame_sizes(streams)
        fits = (heights == height) & (widths == width)
        batch = np.flatnonzero(fits)
        if len(batch) and not self._decode_batch(streams, batch, tiles):
            batch = batch[:0]
        others = np.setdiff1d(np.arange(len(tile_ids)), batch)
        if len(others):
            self._reading.wait()  # the fallback reads into the same scratch memory
            decoded, bad[others] = self.fallback.decode(pyramid, level, tile_ids[others])
            tiles[torch.from_numpy(others).to(self.device)] = decoded.to(self.device)
        return tiles, bad

    def _decode_batch(self, streams: TileStreams, batch: np.ndarray, tiles: torch.Tensor) -> bool:
        """Decode streams `batch` into `tiles[batch]` (queued on the current stream); False if nvJPEG
        refused the batch (nothing is then known of those tiles)."""
        library = _load()
        count = len(batch)
        pointers = (streams.buffer.ctypes.data + streams.starts[batch]).astype(np.uint64)
        lengths = streams.lengths[batch].astype(np.uint64)
        plane = tiles.shape[2] * tiles.shape[3]
        images = np.zeros((count, 2 * _MAX_COMPONENTS), dtype=np.uint64)
        firsts = tiles.data_ptr() + batch.astype(np.uint64) * np.uint64(3 * plane)
        images[:, :3] = firsts[:, None] + np.arange(3, dtype=np.uint64)[None, :] * np.uint64(plane)
        images[:, _MAX_COMPONENTS : _MAX_COMPONENTS + 3] = tiles.shape[3]
        stream = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.device):
            if self._state is None:
                self._state = _states.take(self._handle, self.device)
            status = self._state.fit(self._handle, count)
            if status == _SUCCESS:
                status = library.nvjpegDecodeBatched(
                    self._handle,
                    self._state.pointer,
                    ctypes.c_void_p(pointers.ctypes.data),
                    lengths.ctypes.data_as(ctypes.POINTER(ctypes.c_size_t)),
                    ctypes.c_void_p(images.ctypes.data),
                    ctypes.c_void_p(stream.cuda_stream),
                )
        self._reading.mark(stream, keep=(streams, pointers, lengths, images))
        if status != _SUCCESS:
            logger.debug("nvJPEG refused a batch of %d tiles (status %d): decoding them one by one", count, status)
        return status == _SUCCESS

    def close(self) -> None:
        """Give this decoder's nvJPEG state back to the process's idle states."""
        self._reading.wait()
        if self._state is not None:
            _states.give_back(self._state)
            self._state = None
        self.fallback.close()


class _State:
    """An nvJPEG decoding state of device `device_index`, set up for batches of `batch_size` tiles (0: not
    yet). `fit` sets it up again for another size: batches of irregular tissue hold varying numbers of
    tiles, and one state then serves them all (NVIDIA's nvImageCodec sets its state up before every
    batch)."""

    def __init__(self, handle: ctypes.c_void_p, device: torch.device) -> None:
        self.device_index, self.batch_size = device.index, 0
        self.pointer = ctypes.c_void_p()
        status = _load().nvjpegJpegStateCreate(handle, ctypes.byref(self.pointer))
        if status != _SUCCESS:
            raise NvjpegUnavailable(f"nvjpegJpegStateCreate failed (status {status})")

    def fit(self, handle: ctypes.c_void_p, batch_size: int) -> int:
        """Set the state up for batches of `batch_size` tiles unless it is; nvJPEG's status."""
        if batch_size == self.batch_size:
            return _SUCCESS
        status = _load().nvjpegDecodeBatchedInitialize(handle, self.pointer, batch_size, 1, _OUTPUT_RGB)
        self.batch_size = batch_size if status == _SUCCESS else 0
        return status

    def destroy(self) -> None:
        _load().nvjpegJpegStateDestroy(self.pointer)


class _IdleStates:
    """Decoding states kept between decoders (a slide's lanes, the next slide's): setting one up and its
    first batch allocate host and GPU memory, which cost a tenth of a second a slide (H200). At most
    MAX_IDLE_STATES are kept, the most recently used."""

    def __init__(self) -> None:
        self._idle: list[_State] = []
        self._lock = threading.Lock()

    def take(self, handle: ctypes.c_void_p, device: torch.device) -> _State:
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index].device_index == device.index:
                    return self._idle.pop(index)
        return _State(handle, device)

    def give_back(self, state: _State) -> None:
        with self._lock:
            self._idle.append(state)
            oldest = self._idle[:-MAX_IDLE_STATES]
            del self._idle[:-MAX_IDLE_STATES]
        for state in oldest:
            state.destroy()


MAX_IDLE_STATES = 4
_states = _IdleStates()
