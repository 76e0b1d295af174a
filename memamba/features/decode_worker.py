"""libjpeg tile decoding without torch: the per-tile loop shared by decode threads and decode processes,
and the loop of a decode process (`main`).

A decode process serves one lane at a time. It reads `DecodeRequest`s (pickled) from stdin, decodes the
tiles straight into the shared memory the request names (one of the lane's output buffers) and answers
each request on stdout with the bool [T] undecodable flags, or with a `DecodeFailure`. A `None` request
(the lane is done) closes the slide and is answered with `None`. It exits when stdin closes.
"""

from __future__ import annotations

import collections
import mmap
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from memamba.features.jpeg_tiles import JpegTiffPyramid

MAPPED_MEMORIES = 2
"""Shared memories a decode process keeps mapped: its lane's output buffers, used in turn."""


@dataclass(frozen=True)
class DecodeRequest:
    """Decode tiles `tile_ids` of `level` of `slide` into the shared memory `memory` (opened at
    `memory_path`, `memory_size` bytes) as uint8 [T, h, w, 3]. `memory` names one mapping: a new name
    means a new buffer."""

    slide: Path
    level: int
    tile_ids: np.ndarray
    memory: str
    memory_path: str
    memory_size: int
    replicate_chroma: bool


@dataclass(frozen=True)
class DecodeFailure:
    """A request the decode process could not serve at all (`error` says why)."""

    error: str


def decode_into(
    pyramid: JpegTiffPyramid,
    level: int,
    tile_ids: np.ndarray,
    pixels: np.ndarray,
    bad: np.ndarray,
    replicate_chroma: bool,
) -> None:
    """Decode tiles `tile_ids` into `pixels[i]` (uint8 [h, w, 3]); set `bad[i]` for those that fail.
    `replicate_chroma`: libjpeg's fast (non-fancy) chroma upsampling, as the GPU's JPEG engines."""
    import simplejpeg

    streams = pyramid.read_streams(level, tile_ids)
    data, shape = memoryview(streams.buffer), pixels.shape[1:]
    for index, (start, length) in enumerate(zip(streams.starts.tolist(), streams.lengths.tolist(), strict=True)):
        try:
            image = simplejpeg.decode_jpeg(
                data[start : start + length], colorspace="RGB", fastupsample=replicate_chroma, buffer=pixels[index]
            )
            bad[index] = image.shape != shape
        except ValueError:
            bad[index] = True


class _Worker:
    """The state of a decode process: the slide it reads and the shared memories it writes (the lane's
    output buffers, mapped once each; the least recently used one unmapped beyond MAPPED_MEMORIES)."""

    def __init__(self) -> None:
        self.pyramid: JpegTiffPyramid | None = None
        self.memories: collections.OrderedDict[str, mmap.mmap] = collections.OrderedDict()

    def forget(self) -> None:
        """Close the slide of the last lane."""
        if self.pyramid is not None:
            self.pyramid.close()
        self.pyramid = None

    def memory(self, request: DecodeRequest) -> mmap.mmap:
        """The request's shared memory, mapped on first use."""
        if request.memory in self.memories:
            self.memories.move_to_end(request.memory)
            return self.memories[request.memory]
        while len(self.memories) >= MAPPED_MEMORIES:
            self.memories.popitem(last=False)[1].close()
        with open(request.memory_path, "r+b") as memory_file:
            mapped = self.memories[request.memory] = mmap.mmap(memory_file.fileno(), request.memory_size)
        return mapped

    def serve(self, request: DecodeRequest) -> np.ndarray:
        """bool [T] undecodable flags of the request's tiles, decoded into its shared memory."""
        if self.pyramid is None or self.pyramid.path != Path(request.slide):
            if self.pyramid is not None:
                self.pyramid.close()
            self.pyramid = JpegTiffPyramid(Path(request.slide))
        layout = self.pyramid.levels[request.level]
        shape = (len(request.tile_ids), layout.tile_height, layout.tile_width, 3)
        pixels = np.frombuffer(self.memory(request), dtype=np.uint8, count=int(np.prod(shape)))
        bad = np.zeros(len(request.tile_ids), dtype=bool)
        decode_into(self.pyramid, request.level, request.tile_ids, pixels.reshape(shape), bad, request.replicate_chroma)
        return bad


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer pickled `DecodeRequest`s from `requests` on `answers` until `requests` ends."""
    worker = _Worker()
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: np.ndarray | DecodeFailure | None = worker.forget() if request is None else worker.serve(request)
        except Exception as error:  # reported to the lane, which fails the slide with it
            answer = DecodeFailure(f"{type(error).__name__}: {error}")
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


def main() -> None:
    """A decode process: serve requests from stdin until it closes."""
    serve(sys.stdin.buffer, sys.stdout.buffer)
