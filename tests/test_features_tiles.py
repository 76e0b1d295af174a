"""Decode-on-device tile reader: equal to the OpenSlide reader, level layout, corrupt tiles, fallbacks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import openslide
import pytest
import simplejpeg
import tifffile
import torch
from test_features import write_coords

from memamba.demo.svs import write_aperio_svs
from memamba.errors import InputError
from memamba.features import tile_lanes
from memamba.features.batches import BAND_ROWS, reading_order, tile_batches
from memamba.features.dataset import SlidePatchDataset
from memamba.features.decode_processes import ProcessLibjpegDecoder, processes_supported
from memamba.features.extract import extract_features
from memamba.features.features_h5 import read_features
from memamba.features.jpeg_decoders import LibjpegDecoder, NvjpegDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid, UnsupportedSlide
from memamba.features.tile_lanes import (
    CPU_LANES,
    GPU_BATCHES_A_READ_GRAPHED,
    GPU_LANES,
    GPU_LANES_ALONE,
    GPU_LANES_GRAPHED,
    plan_lanes,
)
from memamba.features.tile_reader import TilePatchReader

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
CMU = Path(__file__).parent / "data" / "slides" / "cmu-1-small-region.svs"
TISSUE_COORDS = np.array([[1020, 1200], [1200, 1800], [900, 2400], [1380, 900], [1680, 2500]], dtype=np.int64)
# Tile-aligned, unaligned, and crossing the right/bottom edges of the 1536 × 1024 slide.
GENERATED_COORDS = np.array([[0, 0], [256, 512], [300, 77], [1300, 900], [1100, 700]], dtype=np.int64)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA GPU")


@pytest.fixture(scope="module")
def generated_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1536 × 1024 Aperio SVS (YCbCr JPEG tiles of 256 px, levels 1 and 4) of smooth tissue-like colour."""
    y, x = np.mgrid[0:1024, 0:1536]
    rgb = np.stack(
        [180 + 60 * np.sin(x / 37.0), 120 + 70 * np.cos(y / 23.0), 200 + 40 * np.sin((x + y) / 51.0)], axis=-1
    )
    path = tmp_path_factory.mktemp("slides") / "generated.svs"
    write_aperio_svs(path, np.clip(rgb, 0, 255).astype(np.uint8), mpp=0.25, app_mag=40, quality=90)
    return path


def openslide_patches(slide: Path, coords: np.ndarray, level0: int, read: int) -> torch.Tensor:
    dataset = SlidePatchDataset(slide, coords, level0, read, 224)
    return torch.stack([dataset[index][0] for index in range(len(coords))])


def tile_patches(slide: Path, coords: np.ndarray, level0: int, read: int, device: torch.device = CPU) -> torch.Tensor:
    reader = TilePatchReader(JpegTiffPyramid(slide), coords, level0, read, 224, device)
    images, failed = reader.read_batch(np.arange(len(coords)))
    assert not failed.any()
    return images.cpu()


def assert_close_images(actual: torch.Tensor, expected: torch.Tensor, mean: float, worst: int) -> None:
    difference = (actual.int() - expected.int()).abs()
    assert actual.shape == expected.shape and actual.dtype == torch.uint8
    assert difference.float().mean() <= mean and difference.max() <= worst


def corrupt_tile(slide: Path, page: int, tile: int) -> None:
    """Overwrite the first bytes of one tile of `page` so that no JPEG decoder accepts it."""
    with tifffile.TiffFile(slide) as tiff:
        offset = tiff.pages[page].dataoffsets[tile]
    with slide.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x00" * 64)


def test_generated_svs_patches_equal_openslide_within_rounding(generated_svs: Path) -> None:
    expected = openslide_patches(generated_svs, GENERATED_COORDS, 512, 256)
    assert_close_images(tile_patches(generated_svs, GENERATED_COORDS, 512, 256), expected, mean=0.2, worst=2)


def test_patches_at_native_size_equal_openslide_exactly(generated_svs: Path) -> None:
    expected = openslide_patches(generated_svs, GENERATED_COORDS, 224, 224)
    assert torch.equal(tile_patches(generated_svs, GENERATED_COORDS, 224, 224), expected)


@pytest.mark.parametrize(("level0", "read"), [(512, 256), (1024, 256)])
def test_matrix_resize_crops_and_resizes_patches_like_interpolate_up_to_the_slides_edges(
    generated_svs: Path, level0: int, read: int
) -> None:
    readers = [
        TilePatchReader(JpegTiffPyramid(generated_svs), GENERATED_COORDS, level0, read, 224, CPU, matrix_resize=matrix)
        for matrix in (True, False)
    ]
    (by_products, failed), (interpolated, _) = (reader.read_batch(np.arange(5)) for reader in readers)
    assert readers[0].resampler is not None and readers[1].resampler is None and not failed.any()
    assert (by_products[3, :, -20:, -20:] == 255).all()  # [1300, 900] reaches beyond the slide: white there
    assert_close_images(by_products, interpolated, mean=0.02, worst=1)


def test_libjpeg_on_several_threads_equals_one_thread(generated_svs: Path) -> None:
    pyramid = JpegTiffPyramid(generated_svs)
    threaded = TilePatchReader(pyramid, GENERATED_COORDS, 512, 256, 224, CPU, LibjpegDecoder(CPU, threads=3))
    images, failed = threaded.read_batch(np.arange(len(GENERATED_COORDS)))
    threaded.close()
    single = TilePatchReader(JpegTiffPyramid(generated_svs), GENERATED_COORDS, 512, 256, 224, CPU)
    assert not failed.any()
    assert torch.equal(images, single.read_batch(np.arange(len(GENERATED_COORDS)))[0])


def test_replicating_upsampling_is_libjpegs_fast_mode_close_to_its_default(generated_svs: Path) -> None:
    pyramid, tiles = JpegTiffPyramid(generated_svs), np.arange(6)
    fancy, _ = LibjpegDecoder(CPU).decode(pyramid, 0, tiles)
    replicated, bad = LibjpegDecoder(CPU, upsampling="replicate").decode(pyramid, 0, tiles)
    streams = pyramid.read_streams(0, tiles)
    fast = np.stack([simplejpeg.decode_jpeg(streams[index], fastupsample=True) for index in range(len(streams))])
    assert not bad.any()
    assert torch.equal(replicated, torch.from_numpy(fast).permute(0, 3, 1, 2))
    difference = (replicated.int() - fancy.int()).abs()
    assert 0 < difference.max() <= 48 and difference.float().mean() < 1
    with pytest.raises(ValueError, match="unknown chroma upsampling 'nearest'"):
        LibjpegDecoder(CPU, upsampling="nearest")


class _SlowDecoder:
    """A libjpeg decoder that waits before each batch: a slow lane beside a fast one."""

    def __init__(self, seconds: float) -> None:
        self.inner, self.seconds, self.batches = LibjpegDecoder(CPU), seconds, 0
        self.name, self.device = "slow", CPU

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        time.sleep(self.seconds)
        self.batches += 1
        return self.inner.decode(pyramid, level, tile_ids)

    def close(self) -> None:
        self.inner.close()


def test_a_fast_lane_reads_more_batches_and_every_batch_arrives_in_order(generated_svs: Path) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 4)
    fallback = SlidePatchDataset(generated_svs, coords, 512, 256, 224)
    slow, fast = _SlowDecoder(0.5), _SlowDecoder(0.0)
    lanes = [TilePatchReader(JpegTiffPyramid(generated_svs), coords, 512, 256, 224, CPU, d) for d in (slow, fast)]
    batches = list(tile_batches(lanes, fallback, 2))
    expected = tile_patches(generated_svs, coords, 512, 256)
    assert torch.equal(torch.cat([images for images, _ in batches]), expected)
    assert slow.batches + fast.batches == 10 and fast.batches > slow.batches


def test_cpu_lanes_share_one_pool_that_stops_with_the_last_lane(generated_svs: Path) -> None:
    lanes = plan_lanes(generated_svs, GENERATED_COORDS, 512, 256, 224, CPU, threads=3)
    decoders = [lane.decoder for lane in lanes]
    assert len(lanes) == CPU_LANES and {d.upsampling for d in decoders} == {"fancy"}
    assert all(d.pool is decoders[0].pool and d.threads == 3 for d in decoders)
    for lane in lanes[:-1]:
        lane.close()
    decoders[0].pool.executor.submit(int).result()
    lanes[-1].close()
    with pytest.raises(RuntimeError, match="shutdown"):
        decoders[0].pool.executor.submit(int)


def test_a_slides_lanes_parse_it_once_and_each_read_through_its_own_handle(generated_svs: Path) -> None:
    lanes = plan_lanes(generated_svs, GENERATED_COORDS, 512, 256, 224, CPU, threads=3)
    pyramids = [lane.pyramid for lane in lanes]
    assert len({id(pyramid) for pyramid in pyramids}) == len(lanes)
    assert all(pyramid.levels is pyramids[0].levels for pyramid in pyramids)
    lanes[0].close()
    images, failed = lanes[1].read_batch(np.arange(len(GENERATED_COORDS)))
    assert not failed.any() and torch.equal(images, tile_patches(generated_svs, GENERATED_COORDS, 512, 256))
    for lane in lanes[1:]:
        lane.close()


def test_several_reader_threads_deliver_every_batch_in_order(generated_svs: Path) -> None:
    fallback = SlidePatchDataset(generated_svs, GENERATED_COORDS, 512, 256, 224)
    readers = [TilePatchReader(JpegTiffPyramid(generated_svs), GENERATED_COORDS, 512, 256, 224, CPU) for _ in range(3)]
    batches = list(tile_batches(readers, fallback, 2))
    expected = tile_patches(generated_svs, GENERATED_COORDS, 512, 256)
    assert [len(images) for images, _ in batches] == [2, 2, 1]
    assert torch.equal(torch.cat([images for images, _ in batches]), expected)


def test_a_lane_reading_several_batches_at_once_hands_each_of_them_over_in_order(generated_svs: Path) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 4)
    fallback = SlidePatchDataset(generated_svs, coords, 512, 256, 224)
    lane = TilePatchReader(JpegTiffPyramid(generated_svs), coords, 512, 256, 224, CPU)
    lane.batches_a_read = 3
    read_sizes = []
    read_batch = lane.read_batch

    def recording_read_batch(indices: np.ndarray, then: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        read_sizes.append(len(indices))
        return read_batch(indices, then)

    lane.read_batch = recording_read_batch
    batches = list(tile_batches([lane], fallback, 2))
    assert [len(images) for images, _ in batches] == [2] * 10
    assert torch.equal(torch.cat([images for images, _ in batches]), tile_patches(generated_svs, coords, 512, 256))
    assert read_sizes[0] == 6 and max(read_sizes) == 6 and sum(read_sizes) == len(coords)


class _CountedProcesses(ProcessLibjpegDecoder):
    """Decode processes that count the batches their lane sent ahead."""

    sent_ahead = 0

    def decode(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray, then: np.ndarray | None = None):
        self.sent_ahead += then is not None
        return super().decode(pyramid, level, tile_ids, then)


@pytest.mark.skipif(not processes_supported(), reason="decode processes share memory through Linux memfd")
def test_lanes_of_decode_processes_send_the_next_batch_ahead_and_deliver_every_batch_in_order(
    generated_svs: Path,
) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 4)
    fallback = SlidePatchDataset(generated_svs, coords, 512, 256, 224)
    decoders = [_CountedProcesses(CPU, processes=2) for _ in range(2)]
    lanes = [TilePatchReader(JpegTiffPyramid(generated_svs), coords, 512, 256, 224, CPU, d) for d in decoders]
    batches = list(tile_batches(lanes, fallback, 2))
    assert torch.equal(torch.cat([images for images, _ in batches]), tile_patches(generated_svs, coords, 512, 256))
    assert sum(decoder.sent_ahead for decoder in decoders) >= 5


@pytest.mark.skipif(not processes_supported(), reason="decode processes share memory through Linux memfd")
def test_a_consumer_that_stops_early_ends_every_lane_and_gives_its_decode_processes_back(generated_svs: Path) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 8)
    fallback = SlidePatchDataset(generated_svs, coords, 512, 256, 224)
    decoders = [_CountedProcesses(CPU, processes=1) for _ in range(3)]
    lanes = [TilePatchReader(JpegTiffPyramid(generated_svs), coords, 512, 256, 224, CPU, d) for d in decoders]
    batches = iter(tile_batches(lanes, fallback, 2))
    next(batches)
    time.sleep(0.5)  # the lanes claim and read ahead up to their limit
    batches.close()
    assert all(decoder.workers == [] for decoder in decoders)


def test_patches_from_a_reduced_level_match_openslide(generated_svs: Path) -> None:
    expected = openslide_patches(generated_svs, GENERATED_COORDS[:3], 1024, 256)
    assert_close_images(tile_patches(generated_svs, GENERATED_COORDS[:3], 1024, 256), expected, mean=1.0, worst=40)


def test_aperio_rgb_jpeg_tiles_with_tables_match_openslide_colours() -> None:
    expected = openslide_patches(CMU, TISSUE_COORDS, 512, 256)
    assert_close_images(tile_patches(CMU, TISSUE_COORDS, 512, 256), expected, mean=0.2, worst=2)


def test_levels_and_best_level_follow_openslide(generated_svs: Path) -> None:
    pyramid = JpegTiffPyramid(generated_svs)
    with openslide.OpenSlide(generated_svs) as slide:
        assert [(level.width, level.height) for level in pyramid.levels] == list(slide.level_dimensions)
        assert [level.downsample for level in pyramid.levels] == pytest.approx(slide.level_downsamples)
        for downsample in (1, 2, 3.99, 4, 9):
            assert pyramid.best_level(downsample) == slide.get_best_level_for_downsample(downsample)


def test_deflate_tiff_is_not_taken_by_the_tile_reader(tmp_path: Path) -> None:
    slide = tmp_path / "deflate.tif"
    tifffile.imwrite(
        slide, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), photometric="rgb", compression="deflate"
    )
    with pytest.raises(UnsupportedSlide, match="not JPEG"):
        JpegTiffPyramid(slide)


def test_explicit_tiles_reader_on_unsupported_slide_raises_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    slide = tmp_path / "deflate.tif"
    tifffile.imwrite(
        slide, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), photometric="rgb", compression="deflate"
    )
    coords = write_coords(tmp_path / "coords.h5", [[0, 0]])
    out = tmp_path / "features.h5"
    with pytest.raises(InputError, match=r"deflate\.tif.*--reader openslide"):
        extract_features(slide, coords, out, reader="tiles", allow_random_weights=True)
    assert not out.exists()


def test_corrupt_tile_is_reread_through_openslide_at_another_level(generated_svs: Path, tmp_path: Path) -> None:
    slide = tmp_path / "corrupt.svs"
    slide.write_bytes(generated_svs.read_bytes())
    corrupt_tile(slide, page=0, tile=0)
    coords = GENERATED_COORDS[:2]
    reader = TilePatchReader(JpegTiffPyramid(slide), coords, 512, 256, 224, CPU)
    assert reader.read_batch(np.arange(2))[1].tolist() == [True, False]
    images, blank = next(iter(tile_batches(reader, SlidePatchDataset(slide, coords, 512, 256, 224), 2)))
    assert blank.tolist() == [False, False]
    intact = openslide_patches(generated_svs, coords, 512, 256)
    assert_close_images(images, intact, mean=6.0, worst=255)


def test_openslide_dataset_retries_a_corrupt_tile_at_another_level(generated_svs: Path, tmp_path: Path) -> None:
    slide = tmp_path / "corrupt.svs"
    slide.write_bytes(generated_svs.read_bytes())
    corrupt_tile(slide, page=0, tile=0)
    image, blank = SlidePatchDataset(slide, [[0, 0]], 512, 256, 224)[0]
    assert not blank
    assert_close_images(image[None], openslide_patches(generated_svs, [[0, 0]], 512, 256), mean=6.0, worst=255)


def test_tiles_and_openslide_readers_give_the_same_features(generated_svs: Path, tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", GENERATED_COORDS[:4], patch_size_level0=512, target_patch_size=256)
    results = {}
    for reader in ("tiles", "openslide"):
        result = extract_features(
            generated_svs, coords, tmp_path / f"{reader}.h5", allow_random_weights=True, batch_size=4, reader=reader
        )
        assert result.reader == read_features(tmp_path / f"{reader}.h5")[2]["reader"] == reader
        results[reader] = read_features(tmp_path / f"{reader}.h5")[0]
    scale = np.abs(results["openslide"]).mean()
    assert np.abs(results["tiles"] - results["openslide"]).mean() < 0.02 * scale


def tiles_a_batch_decodes(coords: np.ndarray, patch: int, batch: int) -> int:
    """256-px tiles decoded over all batches when each batch decodes each tile it touches once."""
    span = np.arange(-(-patch // 256) + 1)
    total = 0
    for start in range(0, len(coords), batch):
        corners = coords[start : start + batch]
        cols = (corners[:, 0, None] + np.minimum(span * 256, patch - 1)) // 256
        rows = (corners[:, 1, None] + np.minimum(span * 256, patch - 1)) // 256
        total += len(np.unique(rows[:, :, None] * 1_000_000 + cols[:, None, :]))
    return total


def test_reading_order_reads_bands_column_by_column_so_batches_decode_fewer_tiles() -> None:
    patch = 507  # 0.5 µm/px patches of a 0.2525 µm/px scan: off the tile grid
    xs, ys = np.meshgrid(np.arange(200) * patch, np.arange(2 * BAND_ROWS) * patch)  # a 100,000-px-wide scan
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)  # row-major, as the tiling stage writes them
    order = reading_order(coords, patch)
    assert sorted(order.tolist()) == list(range(len(coords)))
    first_band = coords[order[: 200 * BAND_ROWS]]
    assert (first_band[:, 1] < BAND_ROWS * patch).all()
    assert first_band[:BAND_ROWS, 0].tolist() == [0] * BAND_ROWS  # down the first column first
    assert first_band[:BAND_ROWS, 1].tolist() == (np.arange(BAND_ROWS) * patch).tolist()
    banded, listed = tiles_a_batch_decodes(coords[order], patch, 128), tiles_a_batch_decodes(coords, patch, 128)
    assert banded < 0.8 * listed


def test_tiles_reader_reads_in_bands_and_writes_features_in_the_coords_order(
    generated_svs: Path, tmp_path: Path
) -> None:
    xs, ys = np.meshgrid(np.arange(6) * 256, np.arange(4) * 256)
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)  # one band: read column by column, not as listed
    assert not np.array_equal(reading_order(grid, 256), np.arange(len(grid)))
    coords = write_coords(tmp_path / "coords.h5", grid, patch_size_level0=256)
    results = {}
    for reader in ("tiles", "openslide"):
        extract_features(
            generated_svs, coords, tmp_path / f"{reader}.h5", allow_random_weights=True, batch_size=5, reader=reader
        )
        results[reader] = read_features(tmp_path / f"{reader}.h5")[0].astype(np.float64)
    tiles, openslide_features = results["tiles"], results["openslide"]
    scale = np.abs(openslide_features).mean()
    assert np.abs(tiles - openslide_features).mean(axis=1).max() < 0.02 * scale
    shuffled = openslide_features[reading_order(grid, 256)]  # what rows left in reading order would give
    assert np.abs(shuffled - openslide_features).mean(axis=1).max() > 0.1 * scale


def test_auto_reader_on_cpu_is_openslide(generated_svs: Path, tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", GENERATED_COORDS[:1])
    result = extract_features(generated_svs, coords, tmp_path / "features.h5", allow_random_weights=True)
    assert result.reader == "openslide"


def lane_images(lanes: list[TilePatchReader], slide: Path, coords: np.ndarray, batch: int = 2) -> torch.Tensor:
    fallback = SlidePatchDataset(slide, coords, 512, 256, 224)
    return torch.cat([images.cpu() for images, _ in tile_batches(lanes, fallback, batch)])


@needs_cuda
@pytest.mark.usefixtures("any_slide_is_large")
@pytest.mark.parametrize("slide_name", ["generated", "cmu"])
def test_gpu_decoding_gives_openslide_patches_within_rounding(slide_name: str, generated_svs: Path) -> None:
    slide, coords = (generated_svs, GENERATED_COORDS) if slide_name == "generated" else (CMU, TISSUE_COORDS)
    for decoder in (NvjpegDecoder(CUDA), LibjpegDecoder(CUDA, upsampling="replicate")):
        reader = TilePatchReader(JpegTiffPyramid(slide), coords, 512, 256, 224, CUDA, decoder)
        images, failed = reader.read_batch(np.arange(len(coords)))
        reader.close()
        assert not failed.any()
        if slide_name == "generated" or decoder.name == "libjpeg":
            assert_close_images(images.cpu(), openslide_patches(slide, coords, 512, 256), mean=1.0, worst=16)
    lanes = plan_lanes(slide, coords, 512, 256, 224, CUDA, threads=8)
    assert_close_images(
        lane_images(lanes, slide, coords), openslide_patches(slide, coords, 512, 256), mean=1.0, worst=16
    )


@needs_cuda
def test_nvjpeg_decodes_tiles_bit_for_bit_like_libjpeg_with_replicated_chroma(generated_svs: Path) -> None:
    pyramid, tiles = JpegTiffPyramid(generated_svs), np.arange(24)
    on_gpu, gpu_bad = NvjpegDecoder(CUDA).decode(pyramid, 0, tiles)
    on_cpu, cpu_bad = LibjpegDecoder(CPU, upsampling="replicate").decode(pyramid, 0, tiles)
    assert not gpu_bad.any() and not cpu_bad.any()
    assert torch.equal(on_gpu.cpu(), on_cpu)


@pytest.fixture
def any_slide_is_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan the small test slides' lanes as those of large slides (libjpeg lanes beside nvJPEG's)."""
    monkeypatch.setattr(tile_lanes, "SMALL_SLIDE_PATCHES", 0)


@needs_cuda
@pytest.mark.usefixtures("any_slide_is_large")
def test_cpu_lanes_join_the_gpu_lanes_only_where_they_decode_alike(generated_svs: Path) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 8)
    hybrid = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=8)
    cpu_decoder = "libjpeg-processes" if processes_supported() else "libjpeg"
    assert [lane.decoder.name for lane in hybrid] == ["nvjpeg"] * GPU_LANES + [cpu_decoder] * CPU_LANES
    assert {lane.decoder.upsampling for lane in hybrid[GPU_LANES:]} == {"replicate"}
    gpu_only = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=1)
    assert [lane.decoder.name for lane in gpu_only] == ["nvjpeg"] * GPU_LANES_ALONE
    assert torch.equal(lane_images(hybrid, generated_svs, coords), lane_images(gpu_only, generated_svs, coords))
    rgb_coded = plan_lanes(CMU, TISSUE_COORDS, 512, 256, 224, CUDA, threads=8)
    assert [lane.decoder.name for lane in rgb_coded] == [cpu_decoder] * CPU_LANES
    for lane in rgb_coded:
        lane.close()


@needs_cuda
def test_a_small_slide_is_read_by_nvjpeg_lanes_alone(generated_svs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 8)
    monkeypatch.setattr(tile_lanes, "SMALL_SLIDE_PATCHES", len(coords))
    small = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=8)
    assert [lane.decoder.name for lane in small] == ["nvjpeg"] * GPU_LANES_ALONE
    monkeypatch.setattr(tile_lanes, "SMALL_SLIDE_PATCHES", len(coords) - 1)
    large = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=8)
    cpu_decoder = "libjpeg-processes" if processes_supported() else "libjpeg"
    assert [lane.decoder.name for lane in large] == ["nvjpeg"] * GPU_LANES + [cpu_decoder] * CPU_LANES
    assert torch.equal(lane_images(small, generated_svs, coords), lane_images(large, generated_svs, coords))


@needs_cuda
@pytest.mark.usefixtures("any_slide_is_large")
def test_an_encoder_replaying_cuda_graphs_reads_through_more_nvjpeg_lanes_several_batches_at_once_alike(
    generated_svs: Path,
) -> None:
    coords = np.concatenate([GENERATED_COORDS] * 8)
    eager = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=8)
    compiled = plan_lanes(generated_svs, coords, 512, 256, 224, CUDA, threads=8, graphed_encoder=True)
    cpu_decoder = "libjpeg-processes" if processes_supported() else "libjpeg"
    assert GPU_LANES_GRAPHED > GPU_LANES
    assert [lane.decoder.name for lane in compiled] == ["nvjpeg"] * GPU_LANES_GRAPHED + [cpu_decoder] * CPU_LANES
    reads = [GPU_BATCHES_A_READ_GRAPHED] * GPU_LANES_GRAPHED + [1] * CPU_LANES
    assert [lane.batches_a_read for lane in compiled] == reads
    assert GPU_BATCHES_A_READ_GRAPHED > 1 and {lane.batches_a_read for lane in eager} == {1}
    assert torch.equal(lane_images(compiled, generated_svs, coords), lane_images(eager, generated_svs, coords))


@needs_cuda
@pytest.mark.usefixtures("any_slide_is_large")
@pytest.mark.parametrize("fused", [True, False])
def test_extraction_plans_its_lanes_for_an_encoder_replaying_cuda_graphs_and_compiled_matches_eager_features(
    fused: bool, generated_svs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memamba.features import captured_encoder

    monkeypatch.setattr(captured_encoder, "FUSED_CNN", fused)  # resnet50_trunc captured as a CUDA graph, or not
    coords = write_coords(tmp_path / "coords.h5", GENERATED_COORDS, patch_size_level0=512, target_patch_size=256)
    run = {"allow_random_weights": True, "device": "cuda", "reader": "tiles", "batch_size": 4}
    with caplog.at_level("INFO", logger="memamba.features.tile_lanes"):
        extract_features(generated_svs, coords, tmp_path / "eager.h5", **run)
    assert f"{GPU_LANES_GRAPHED if fused else GPU_LANES} nvJPEG lanes" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="memamba.features.tile_lanes"):
        extract_features(generated_svs, coords, tmp_path / "compiled.h5", compile_model=True, **run)
    assert f"{GPU_LANES_GRAPHED} nvJPEG lanes" in caplog.text
    eager, compiled = read_features(tmp_path / "eager.h5")[0], read_features(tmp_path / "compiled.h5")[0]
    assert np.corrcoef(eager.ravel(), compiled.ravel())[0, 1] > 0.999


@needs_cuda
def test_auto_reader_on_cuda_decodes_tiles_and_matches_cpu_features(tmp_path: Path) -> None:
    coords = write_coords(tmp_path / "coords.h5", TISSUE_COORDS, patch_size_level0=512, target_patch_size=256)
    cuda = extract_features(CMU, coords, tmp_path / "cuda.h5", allow_random_weights=True, device="cuda")
    cpu = extract_features(CMU, coords, tmp_path / "cpu.h5", allow_random_weights=True, reader="openslide")
    assert (cuda.reader, cpu.reader) == ("tiles", "openslide")
    on_cuda, on_cpu = read_features(tmp_path / "cuda.h5")[0], read_features(tmp_path / "cpu.h5")[0]
    assert np.corrcoef(on_cuda.ravel(), on_cpu.ravel())[0, 1] > 0.99


def test_tile_streams_are_read_in_spans_in_the_order_asked_with_tables_spliced_in() -> None:
    pyramid = JpegTiffPyramid(CMU)
    layout = pyramid.levels[0]
    wanted = np.array([7, 3, 4, 5, 40, 0, 41, 3])
    streams = pyramid.read_streams(0, wanted)
    with CMU.open("rb") as handle:
        for position, tile in enumerate(wanted):
            handle.seek(int(layout.offsets[tile]))
            stored = handle.read(int(layout.bytecounts[tile]))
            assert bytes(streams[position]) == layout.header + stored[2:]
    assert len(layout.header) > 100 and b"Adobe" in layout.header


def test_tiles_cut_off_by_a_truncated_file_are_flagged_not_fatal(generated_svs: Path, tmp_path: Path) -> None:
    slide = tmp_path / "truncated.svs"
    slide.write_bytes(generated_svs.read_bytes())
    pyramid = JpegTiffPyramid(slide)
    layout = pyramid.levels[0]
    by_offset = np.argsort(layout.offsets)[:3]
    os.truncate(slide, int(layout.offsets[by_offset[1]]) + 10)
    tiles, bad = LibjpegDecoder(CPU).decode(pyramid, 0, by_offset)
    assert bad.tolist() == [False, True, True] and tiles.shape[0] == 3
