"""Raw JPEG tiles of a tiled TIFF/SVS pyramid: the level layout and each tile as a stand-alone JPEG stream.

A tile of a JPEG-compressed TIFF is an abbreviated JPEG stream; its quantisation and Huffman tables may
live once in the page's JPEGTables tag. `read_streams` splices them back in, and for pages whose
photometric is RGB (Aperio scanners store RGB components without colour transform) it adds an Adobe
APP14 marker with transform 0 so that any JPEG decoder (libjpeg, nvJPEG) returns RGB as stored.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
_JPEG = 7
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_YCBCR = 6
_ASPECT_TOLERANCE = 0.02
_SPAN_GAP = 65536
"""Bytes between two tiles' data below which they are read in one system call."""


@dataclass(frozen=True)
class TileStreams:
    """JPEG streams back to back: stream i is `buffer[starts[i] : starts[i] + lengths[i]]` (uint8)."""

    buffer: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> np.ndarray:
        start = int(self.starts[index])
        return self.buffer[start : start + int(self.lengths[index])]


class UnsupportedSlide(Exception):
    """The slide is not a tiled-JPEG TIFF pyramid this reader can take (the message says why)."""


@dataclass(frozen=True)
class JpegLevel:
    """One pyramid level: `width` × `height` px, `downsample` from level 0, tiles of `tile_height` ×
    `tile_width` px stored row-major at byte `offsets` [T] with `bytecounts` [T]; `header` is what
    replaces each tile stream's SOI (SOI, optional Adobe marker, the page's tables)."""

    width: int
    height: int
    downsample: float
    tile_width: int
    tile_height: int
    offsets: np.ndarray
    bytecounts: np.ndarray
    header: bytes

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)


class JpegTiffPyramid:
    """The tiled JPEG levels of `path`, with OpenSlide's level order, downsamples and best-level choice.

    Levels are the main series' pyramid levels, or (Aperio SVS, whose levels are separate pages and
    whose second page, tiled or not, tifffile takes for a thumbnail) the tiled pages with level 0's
    aspect ratio. Raises UnsupportedSlide for anything else (other codecs,
    planar or non-RGB pages, unreadable files); callers then use the OpenSlide reader. `levels`, where
    given, are those another handle on the same file parsed (see `reopened`), not parsed again.
    """

    def __init__(self, path: Path, levels: list[JpegLevel] | None = None) -> None:
        self.path = Path(path)
        self.levels = _parse_levels(self.path) if levels is None else levels
        self._descriptor: int | None = None
        self._owner_pid: int | None = None
        self._opening = threading.Lock()
        self._scratch = threading.local()

    def reopened(self) -> JpegTiffPyramid:
        """Another handle on the same file (its own descriptor and scratch memory) sharing these parsed
        levels: a slide's lanes parse its tile tables once (2–3 ms a parse for a 40,000² slide)."""
        return JpegTiffPyramid(self.path, self.levels)

    def best_level(self, downsample: float) -> int:
        """OpenSlide's choice: the last level whose downsample is at most `downsample`."""
        downsamples = [level.downsample for level in self.levels]
        for index in range(1, len(downsamples)):
            if downsample < downsamples[index]:
                return index - 1
        return len(downsamples) - 1

    def read_streams(self, level: int, tile_indices: np.ndarray, pinned: bool = False) -> TileStreams:
        """Complete JPEG streams of the tiles `tile_indices` (row-major) of `level`, back to back in one
        buffer. Tiles stored next to each other are read in one system call. A tile that does not start
        like a JPEG stream is kept as stored, for the decoder to reject. The buffer is this thread's
        scratch memory (fresh memory costs page faults), page-locked if `pinned` (the GPU then copies it
        without the CPU): valid until its next call on this pyramid with the same `pinned`."""
        layout = self.levels[level]
        offsets, counts = layout.offsets[tile_indices], layout.bytecounts[tile_indices]
        raw, positions = self._read_spans(offsets, counts)
        header = layout.header
        soi = np.zeros(len(counts), dtype=bool)
        if len(raw) >= 2:
            first = np.minimum(positions, len(raw) - 2)
            soi = (raw[first] == _SOI[0]) & (raw[first + 1] == _SOI[1])
        spliced = (counts >= 2) & soi
        lengths = np.where(spliced, counts - 2 + len(header), counts)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        buffer = self._scratch_buffer("pinned streams" if pinned else "streams", int(lengths.sum()), pinned)
        into, source = memoryview(buffer), memoryview(raw)
        for start, position, count, splice in zip(
            starts.tolist(), positions.tolist(), counts.tolist(), spliced.tolist(), strict=True
        ):
            if splice:
                body = start + len(header)
                into[start:body] = header
                into[body : body + count - 2] = source[position + 2 : position + count]
            else:
                into[start : start + count] = source[position : position + count]
        return TileStreams(buffer, starts, lengths)

    def _read_spans(self, offsets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bytes of the file ranges covering the tiles, each tile's position in them): ranges closer
        than _SPAN_GAP bytes are read together."""
        descriptor = self._file()
        order = np.argsort(offsets, kind="stable")
        ends = offsets[order] + counts[order]
        new_span = np.ones(len(order), dtype=bool)
        new_span[1:] = offsets[order][1:] > np.maximum.accumulate(ends)[:-1] + _SPAN_GAP
        span_ids = np.cumsum(new_span) - 1
        span_starts = offsets[order][new_span]
        span_ends = np.maximum.reduceat(ends, np.flatnonzero(new_span)) if len(order) else ends
        span_places = np.concatenate([[0], np.cumsum(span_ends - span_starts)]).astype(np.int64)
        raw = self._scratch_buffer("spans", int(span_places[-1]))
        for start, end, place in zip(span_starts.tolist(), span_ends.tolist(), span_places.tolist(), strict=False):
            view = memoryview(raw)[place : place + end - start]
            while len(view):
                read = os.preadv(descriptor, [view], start)
                if read <= 0:  # a truncated file: its missing tiles are zeros, which no decoder accepts
                    view[:] = bytes(len(view))
                    break
                view, start = view[read:], start + read
        positions = np.empty(len(order), dtype=np.int64)
        positions[order] = span_places[span_ids] + offsets[order] - span_starts[span_ids]
        return raw, positions

    def _scratch_buffer(self, name: str, size: int, pinned: bool = False) -> np.ndarray:
        """`size` bytes of this thread's reusable buffer `name` (grown as needed; page-locked if `pinned`)."""
        buffer = getattr(self._scratch, name, None)
        if buffer is None or len(buffer) < size:
            if pinned:
                import torch

                buffer = torch.empty(size + size // 4, dtype=torch.uint8, pin_memory=True).numpy()
            else:
                buffer = np.empty(size + size // 4, dtype=np.uint8)
            setattr(self._scratch, name, buffer)
        return buffer[:size]

    def close(self) -> None:
        """Close the file descriptor (reopened on next use)."""
        if self._descriptor is not None and self._owner_pid == os.getpid():
            os.close(self._descriptor)
        self._descriptor = self._owner_pid = None

    def _file(self) -> int:
        """The file descriptor, opened once per process (threads share it: `os.pread` keeps no offset)."""
        with self._opening:
            if self._descriptor is None or self._owner_pid != os.getpid():
                self._descriptor, self._owner_pid = os.open(self.path, os.O_RDONLY), os.getpid()
            return self._descriptor


def _parse_levels(path: Path) -> list[JpegLevel]:
    """The tiled JPEG levels of the file at `path`; UnsupportedSlide where there are none or tifffile
    cannot read it."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            return _read_levels(tiff)
    except UnsupportedSlide:
        raise
    except Exception as error:
        raise UnsupportedSlide(f"tifffile cannot read it ({type(error).__name__}: {error})") from None


def _read_levels(tiff: object) -> list[JpegLevel]:
    """Level layouts of an open tifffile.TiffFile; UnsupportedSlide if any level is not tiled JPEG RGB."""
    series = tiff.series[0]
    if len(series.levels) > 1 and not tiff.is_svs:
        pages = [level.keyframe for level in series.levels]
    else:
        pages = [page for page in tiff.pages if page.is_tiled]
    if not pages or not pages[0].is_tiled:
        raise UnsupportedSlide("level 0 is not tiled")
    height0, width0 = pages[0].imagelength, pages[0].imagewidth
    levels = []
    for page in pages:
        height, width = page.imagelength, page.imagewidth
        aspect_mismatch = abs(width0 / width - height0 / height) > _ASPECT_TOLERANCE * width0 / width
        if levels and (width >= levels[-1].width or aspect_mismatch):
            continue
        levels.append(_level(page, (width0 / width + height0 / height) / 2))
    return levels


def _level(page: object, downsample: float) -> JpegLevel:
    """Layout of one tiled page; UnsupportedSlide unless it is 8-bit 3-sample contiguous JPEG, RGB or YCbCr."""
    if page.compression != _JPEG:
        raise UnsupportedSlide(f"page {page.index} is compressed with {page.compression!r}, not JPEG")
    if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1:
        raise UnsupportedSlide(f"page {page.index} is not 8-bit contiguous RGB")
    if page.photometric not in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR):
        raise UnsupportedSlide(f"page {page.index} has photometric {page.photometric!r}")
    tables = page.jpegtables or b""
    if tables and not (tables.startswith(_SOI) and tables.endswith(_EOI)):
        raise UnsupportedSlide(f"page {page.index} has malformed JPEGTables")
    header = _SOI + (_ADOBE_RGB if page.photometric == _PHOTOMETRIC_RGB else b"") + tables[2:-2]
    return JpegLevel(
        width=int(page.imagewidth),
        height=int(page.imagelength),
        downsample=float(downsample),
        tile_width=int(page.tilewidth),
        tile_height=int(page.tilelength),
        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
        bytecounts=np.asarray(page.databytecounts, dtype=np.int64),
        header=header,
    )
