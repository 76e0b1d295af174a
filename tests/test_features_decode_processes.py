"""libjpeg decode processes: same tiles as decode threads, bad tiles flagged, failures named, clean exit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_features_tiles import corrupt_tile, generated_svs  # noqa: F401 (a fixture)

from memamba.features.decode_processes import (
    _IDLE,
    ProcessLibjpegDecoder,
    SharedHostMemory,
    processes_supported,
    start_decode_processes,
)
from memamba.features.jpeg_decoders import LibjpegDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not processes_supported(), reason="decode processes share memory through Linux memfd")


@pytest.mark.parametrize("upsampling", ["fancy", "replicate"])
def test_decode_processes_give_the_tiles_of_decode_threads(generated_svs: Path, upsampling: str) -> None:  # noqa: F811
    pyramid = JpegTiffPyramid(generated_svs)
    tiles = np.array([5, 0, 23, 7, 1, 2, 11])
    decoder = ProcessLibjpegDecoder(CPU, processes=3, upsampling=upsampling)
    try:
        first, bad = decoder.decode(pyramid, 0, tiles)
        second, _ = decoder.decode(pyramid, 0, tiles[:2])
        third, _ = decoder.decode(pyramid, 1, np.array([0, 1]))
    finally:
        decoder.close()
    expected, expected_bad = LibjpegDecoder(CPU, upsampling=upsampling).decode(pyramid, 0, tiles)
    assert not bad.any() and not expected_bad.any()
    assert torch.equal(first, expected) and torch.equal(second, expected[:2])
    assert torch.equal(third, LibjpegDecoder(CPU, upsampling=upsampling).decode(pyramid, 1, np.array([0, 1]))[0])


def test_decode_processes_flag_an_undecodable_tile_and_decode_the_rest(
    generated_svs: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    slide = tmp_path / "corrupt.svs"
    slide.write_bytes(generated_svs.read_bytes())
    corrupt_tile(slide, page=0, tile=4)
    pyramid, tiles = JpegTiffPyramid(slide), np.arange(8)
    decoder = ProcessLibjpegDecoder(CPU, processes=2)
    try:
        decoded, bad = decoder.decode(pyramid, 0, tiles)
    finally:
        decoder.close()
    expected, _ = LibjpegDecoder(CPU).decode(pyramid, 0, tiles)
    assert bad.tolist() == [index == 4 for index in tiles]
    assert torch.equal(decoded[~torch.from_numpy(bad)], expected[~torch.from_numpy(bad)])


def test_the_batch_sent_ahead_is_decoded_while_the_caller_works_and_an_unasked_one_is_dropped(
    generated_svs: Path,  # noqa: F811
) -> None:
    pyramid = JpegTiffPyramid(generated_svs)
    first, ahead, other = np.array([0, 1, 2, 3]), np.array([7, 8, 9, 10]), np.array([20, 21])
    libjpeg = LibjpegDecoder(CPU)
    decoder = ProcessLibjpegDecoder(CPU, processes=2)
    try:
        worker, tile_bytes = decoder.workers[0], 256 * 256 * 3
        # the first process's memory for the batch sent ahead (slot 1), cleared: a process lent before
        # may have left these very tiles there
        worker.output(1, 2 * tile_bytes, pin=False).tensor.zero_()
        decoded, _ = decoder.decode(pyramid, 0, first, then=ahead)
        written = worker.memories[1].tensor[: 2 * tile_bytes].view(2, 256, 256, 3).permute(0, 3, 1, 2)
        expected_ahead = libjpeg.decode(pyramid, 0, ahead)[0]
        deadline = time.monotonic() + 30  # its answer may already sit in the parent's pipe buffer: poll memory
        while not torch.equal(written, expected_ahead[:2]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert torch.equal(written, expected_ahead[:2]), "the batch sent ahead was not decoded before it was asked for"
        assert torch.equal(decoded, libjpeg.decode(pyramid, 0, first)[0])
        assert torch.equal(decoder.decode(pyramid, 0, ahead, then=ahead)[0], expected_ahead)
        assert torch.equal(decoder.decode(pyramid, 0, other)[0], libjpeg.decode(pyramid, 0, other)[0])
        assert torch.equal(decoder.decode(pyramid, 0, first)[0], libjpeg.decode(pyramid, 0, first)[0])
    finally:
        decoder.close()


def test_a_failing_decode_process_names_the_slide_and_the_error(generated_svs: Path) -> None:  # noqa: F811
    pyramid = JpegTiffPyramid(generated_svs)
    decoder = ProcessLibjpegDecoder(CPU, processes=2)
    try:
        with pytest.raises(RuntimeError, match=r"generated\.svs: decode process \d+: IndexError"):
            decoder.decode(pyramid, 0, np.array([0, 10**6]))
        decoder.workers[0].process.kill()
        with pytest.raises(RuntimeError, match=r"generated\.svs: decode process \d+ exited \(code -9\)"):
            decoder.decode(pyramid, 0, np.arange(4))
    finally:
        decoder.close()


def test_decode_processes_and_their_memory_are_reused_and_a_dead_one_is_replaced(generated_svs: Path) -> None:  # noqa: F811
    pyramid = JpegTiffPyramid(generated_svs)
    first = ProcessLibjpegDecoder(CPU, processes=2)
    first.decode(pyramid, 0, np.arange(3))
    kept, killed = first.workers
    kept_memory, killed_memory = kept.memories[0], killed.memories[0]
    assert kept_memory is not None and killed_memory is not None and os.path.exists(killed_memory.path)
    killed.process.kill()
    killed.process.wait()
    first.close()
    assert killed.memories == [None, None] and not os.path.exists(killed_memory.path)
    second = ProcessLibjpegDecoder(CPU, processes=2)
    try:
        expected = LibjpegDecoder(CPU).decode(pyramid, 0, np.arange(4))[0]
        assert torch.equal(second.decode(pyramid, 0, np.arange(4))[0], expected)
        assert kept in second.workers and killed not in second.workers
        assert kept.memories[0] is kept_memory
    finally:
        second.close()


def test_processes_started_ahead_are_lent_to_the_next_decoder() -> None:
    start_decode_processes(3)
    started = {process.process.pid for process in _IDLE.processes}
    decoder = ProcessLibjpegDecoder(CPU, processes=3)
    try:
        assert {worker.process.pid for worker in decoder.workers} <= started
    finally:
        decoder.close()


def test_shared_host_memory_is_seen_by_a_second_mapping() -> None:
    memory = SharedHostMemory(4096, pin=False)
    try:
        with open(memory.path, "r+b") as other:
            other.seek(100)
            other.write(b"\x07\x08")
        assert memory.tensor[100:102].tolist() == [7, 8] and memory.tensor.numel() == 4096
    finally:
        memory.close()
