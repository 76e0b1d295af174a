"""nvJPEG's batched decode called directly: frame headers checked before decoding, pixels as torchvision's,
bad and mis-sized tiles handed to the fallback, decoding states kept between decoders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import tifffile
import torch
from PIL import Image

from memamba.demo.svs import write_aperio_svs
from memamba.features import nvjpeg_batched
from memamba.features.jpeg_decoders import NvjpegDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid, TileStreams
from memamba.features.nvjpeg_batched import BatchedNvjpegDecoder, frame_sizes

CMU = Path(__file__).parent / "data" / "slides" / "cmu-1-small-region.svs"
CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA GPU")


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024 × 768 Aperio SVS with YCbCr JPEG tiles of 256 px."""
    y, x = np.mgrid[0:768, 0:1024]
    rgb = np.stack([150 + 80 * np.sin(x / 29.0), 110 + 60 * np.cos(y / 17.0), 190 + 50 * np.sin((x - y) / 43.0)], -1)
    path = tmp_path_factory.mktemp("slides") / "batched.svs"
    write_aperio_svs(path, np.clip(rgb, 0, 255).astype(np.uint8), mpp=0.25, app_mag=40, quality=90)
    return path


def streams_of(*encoded: bytes) -> TileStreams:
    lengths = np.array([len(stream) for stream in encoded], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return TileStreams(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), starts, lengths)


def jpeg(height: int, width: int, **options: object) -> bytes:
    pixels = np.random.default_rng(height * width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    if options:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", **options)
        return out.getvalue()
    return simplejpeg.encode_jpeg(pixels, quality=85)


def test_frame_sizes_are_each_tiles_own_with_tables_spliced_in(slide: Path) -> None:
    for path in (slide, CMU):
        pyramid = JpegTiffPyramid(path)
        layout = pyramid.levels[0]
        tiles = np.arange(len(layout.offsets))
        heights, widths = frame_sizes(pyramid.read_streams(0, tiles))
        assert set(heights.tolist()) == {layout.tile_height} and set(widths.tolist()) == {layout.tile_width}


def test_frame_sizes_read_past_app_segments_and_fill_bytes() -> None:
    plain, with_comment = jpeg(40, 24), jpeg(16, 72, comment=b"x" * 300)
    filled = plain[:2] + b"\xff\xff" + plain[2:]
    heights, widths = frame_sizes(streams_of(plain, with_comment, filled))
    assert heights.tolist() == [40, 16, 40] and widths.tolist() == [24, 72, 24]


def test_frame_sizes_are_zero_for_progressive_broken_and_truncated_streams() -> None:
    good = jpeg(32, 48)
    frame = good.index(b"\xff\xc0")
    progressive = jpeg(32, 48, progressive=True)
    heights, widths = frame_sizes(streams_of(progressive, b"\x00" * 64, good[: frame + 6], b"", good))
    assert heights.tolist() == [0, 0, 0, 0, 32] and widths.tolist() == [0, 0, 0, 0, 48]
    heights, widths = frame_sizes(streams_of(b"", b""))
    assert heights.tolist() == widths.tolist() == [0, 0]


def set_tile_height(path: Path, tile: int, height: int) -> None:
    """Rewrite the frame header of level 0's tile `tile` to claim `height` rows."""
    with tifffile.TiffFile(path) as tiff:
        offset, count = tiff.pages[0].dataoffsets[tile], tiff.pages[0].databytecounts[tile]
    with path.open("r+b") as handle:
        handle.seek(offset)
        frame = handle.read(count).index(b"\xff\xc0")
        handle.seek(offset + frame + 5)
        handle.write(height.to_bytes(2, "big"))


@needs_cuda
def test_batched_decode_equals_torchvisions_bit_for_bit(slide: Path) -> None:
    pyramid = JpegTiffPyramid(slide)
    tiles = np.arange(len(pyramid.levels[0].offsets))
    decoder = BatchedNvjpegDecoder(CUDA, fallback=NvjpegDecoder(CUDA))
    for chosen in (tiles, tiles[3:7], tiles[::-2], tiles):
        batched, bad = decoder.decode(pyramid, 0, chosen)
        expected, expected_bad = NvjpegDecoder(CUDA).decode(pyramid, 0, chosen)
        assert not bad.any() and not expected_bad.any()
        assert torch.equal(batched, expected)
    decoder.close()


@needs_cuda
def test_corrupt_and_missized_tiles_go_to_the_fallback_and_the_rest_still_decode(slide: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.svs"
    damaged.write_bytes(slide.read_bytes())
    with tifffile.TiffFile(damaged) as tiff:
        offset = tiff.pages[0].dataoffsets[2]
    with damaged.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x00" * 64)
    set_tile_height(damaged, 5, 4000)
    pyramid, clean = JpegTiffPyramid(damaged), JpegTiffPyramid(slide)
    tiles = np.arange(len(clean.levels[0].offsets))
    decoder = BatchedNvjpegDecoder(CUDA, fallback=NvjpegDecoder(CUDA))
    decoded, bad = decoder.decode(pyramid, 0, tiles)
    decoder.close()
    assert np.flatnonzero(bad).tolist() == [2, 5]
    expected, _ = NvjpegDecoder(CUDA).decode(clean, 0, tiles)
    keep = torch.from_numpy(~bad).to(CUDA)
    assert torch.equal(decoded[keep], expected[keep])


@needs_cuda
def test_a_closed_decoders_state_serves_the_next_decoder_at_any_batch_size(slide: Path) -> None:
    pyramid, tiles = JpegTiffPyramid(slide), np.arange(5)
    first = BatchedNvjpegDecoder(CUDA, fallback=NvjpegDecoder(CUDA))
    first.decode(pyramid, 0, tiles)
    state = first._state
    first.close()
    second = BatchedNvjpegDecoder(CUDA, fallback=NvjpegDecoder(CUDA))
    second.decode(pyramid, 0, tiles)
    assert second._state is state
    second.decode(pyramid, 0, np.arange(7))
    assert second._state is state and state.batch_size == 7
    second.close()
    assert len(nvjpeg_batched._states._idle) <= nvjpeg_batched.MAX_IDLE_STATES
