"""Tiling stage: mpp resolution, tissue mask, patch grid, coords h5, QC image, manifest, failures."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import tifffile

from memamba.errors import InputError
from memamba.slide import (
    TissueParams,
    open_slide,
    patch_grid,
    read_coords,
    read_thumbnail,
    resolve_mpp,
    tile_slide,
    tissue_mask,
    write_manifest,
)

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu-1-small-region.svs"
BROKEN = ["unopenable.tiff", "unreadable.svs", "boxes.tiff"]  # cannot open, corrupt tile, absurd mpp
CLAM_TRIDENT_ATTRS = [
    "patch_size",
    "patch_level",
    "downsample",
    "downsampled_level_dim",
    "level_dim",
    "name",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
]


@pytest.fixture(scope="module")
def cmu_tiled(tmp_path_factory):
    """CMU-1-Small-Region tiled once at the defaults (0.5 µm/px, 256 px, 50 % tissue), with QC image."""
    folder = tmp_path_factory.mktemp("cmu")
    result = tile_slide(CMU, folder / "cmu.h5", qc_png=folder / "cmu.png")
    return result, folder / "cmu.h5", folder / "cmu.png"


@pytest.fixture(scope="module")
def cmu_mask():
    """CMU-1-Small-Region overview mask at default settings, its downsample and level-0 size."""
    with open_slide(CMU) as slide:
        overview, downsample = read_thumbnail(slide)
        size = slide.dimensions
    mask = tissue_mask(overview, TissueParams(), pixel_area_um2=(0.499 * downsample) ** 2)
    return mask, downsample, size


def _tiff(path: Path, rgb: np.ndarray, mpp: float | None) -> Path:
    """Write a tiled generic TIFF OpenSlide can open, with its pixel size (µm/px) in the resolution tags."""
    resolution = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", **resolution)
    return path


def _brute_force_grid(mask, downsample, size, patch, step, threshold):
    """Tissue fraction of every grid cell by looping over cells (rounded cell edges, at least one px)."""
    height, width = mask.shape
    coords, fractions = [], []
    for y in range(0, size[1] - patch + 1, step):
        for x in range(0, size[0] - patch + 1, step):
            x0 = min(max(round(x / downsample), 0), width - 1)
            y0 = min(max(round(y / downsample), 0), height - 1)
            x1 = max(min(round((x + patch) / downsample), width), x0 + 1)
            y1 = max(min(round((y + patch) / downsample), height), y0 + 1)
            fraction = mask[y0:y1, x0:x1].mean()
            if fraction >= threshold and fraction > 0:
                coords.append((x, y))
                fractions.append(fraction)
    return np.array(coords, np.int64).reshape(-1, 2), np.array(fractions)


def test_real_slide_grid_is_nonempty_and_inside_slide(cmu_tiled):
    result, h5, _ = cmu_tiled
    coords, attrs = read_coords(h5)
    assert result.status == "ok" and result.n_patches == len(coords) > 0
    width, height = attrs["level_dim"]
    side = attrs["patch_size_level0"]
    assert (coords >= 0).all()
    assert (coords[:, 0] + side <= width).all() and (coords[:, 1] + side <= height).all()


def test_patch_side_in_level0_px_follows_mpp_ratio(cmu_tiled):
    _, h5, _ = cmu_tiled
    _, attrs = read_coords(h5)
    assert attrs["patch_size_level0"] == round(256 * 0.5 / 0.499) == 257


def test_tissue_mask_agrees_with_crude_pixel_check(cmu_mask):
    mask, downsample, size = cmu_mask
    full, _ = patch_grid(mask, downsample, size, 256, 256, 0.95)
    empty, _ = patch_grid(~mask, downsample, size, 256, 256, 1.0)
    assert len(full) >= 3 and len(empty) >= 3
    with open_slide(CMU) as slide:

        def stained(xy):
            patch = np.asarray(slide.read_region(tuple(int(v) for v in xy), 0, (256, 256)).convert("RGB"))
            return (patch.min(axis=2) < 200).mean()

        assert all(stained(xy) > 0.4 for xy in full[:: max(1, len(full) // 4)])
        assert all(stained(xy) < 0.1 for xy in empty[:: max(1, len(empty) // 4)])


def test_every_kept_patch_has_at_least_the_minimum_tissue_fraction(cmu_mask):
    mask, downsample, size = cmu_mask
    coords, fractions = patch_grid(mask, downsample, size, 257, 257, 0.5)
    assert len(coords) > 0 and (fractions >= 0.5).all()
    _, brute = _brute_force_grid(mask, downsample, size, 257, 257, 0.5)
    np.testing.assert_allclose(np.sort(fractions), np.sort(brute), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_integral_image_grid_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((int(rng.integers(20, 60)), int(rng.integers(20, 60)))) < rng.uniform(0.2, 0.8)
    downsample = float(rng.uniform(1.5, 9.0))
    size = (int(mask.shape[1] * downsample), int(mask.shape[0] * downsample))
    patch = int(rng.integers(4, 40))
    step = int(rng.integers(max(1, patch // 2), patch + 1))
    threshold = float(rng.uniform(0.0, 0.8))
    coords, fractions = patch_grid(mask, downsample, size, patch, step, threshold)
    expected_coords, expected_fractions = _brute_force_grid(mask, downsample, size, patch, step, threshold)
    np.testing.assert_array_equal(coords, expected_coords)
    np.testing.assert_allclose(fractions, expected_fractions, rtol=1e-6)


def test_coarser_target_mpp_doubles_patch_side_and_quarters_count(cmu_tiled, tmp_path):
    fine, _, _ = cmu_tiled
    coarse = tile_slide(CMU, tmp_path / "coarse.h5", target_mpp=1.0)
    _, attrs = read_coords(tmp_path / "coarse.h5")
    assert attrs["patch_size_level0"] == round(256 * 1.0 / 0.499) == 513
    assert 0.15 <= coarse.n_patches / fine.n_patches <= 0.35


def test_overlap_shortens_the_grid_step(tmp_path):
    tile_slide(CMU, tmp_path / "overlap.h5", overlap=128, min_tissue_fraction=0.0)
    coords, attrs = read_coords(tmp_path / "overlap.h5")
    step = round(128 * 0.5 / 0.499)
    assert attrs["overlap"] == 128
    assert set(np.unique(coords[:, 0]) % step) == {0} and np.diff(np.unique(coords[:, 0])).min() == step


def test_svs_mpp_comes_from_metadata():
    with open_slide(CMU) as slide:
        assert resolve_mpp(slide) == (0.499, "metadata")


def test_absurd_metadata_mpp_raises_naming_the_file():
    with open_slide(SLIDES / "boxes.tiff") as slide, pytest.raises(InputError, match=r"boxes\.tiff.*352\.8"):
        resolve_mpp(slide)


def test_mpp_override_replaces_absurd_metadata(tmp_path):
    result = tile_slide(SLIDES / "boxes.tiff", tmp_path / "boxes.h5", mpp_override=0.5)
    assert (result.slide_mpp, result.mpp_source) == (0.5, "override")
    assert read_coords(tmp_path / "boxes.h5")[1]["mpp_source"] == "override"


def test_slide_without_mpp_needs_a_default(tmp_path):
    path = _tiff(tmp_path / "plain.tiff", np.full((256, 256, 3), 255, np.uint8), mpp=None)
    with open_slide(path) as slide:
        with pytest.raises(InputError, match="no mpp"):
            resolve_mpp(slide)
        assert resolve_mpp(slide, default=0.25) == (0.25, "default")


def test_missing_slide_raises_naming_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.svs"):
        open_slide(tmp_path / "nowhere.svs")


@pytest.mark.parametrize("name", BROKEN)
def test_broken_slide_raises_and_writes_nothing(name, tmp_path):
    with pytest.raises(InputError, match=re.escape(name)):
        tile_slide(SLIDES / name, tmp_path / "out.h5", qc_png=tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", BROKEN)
def test_broken_slide_recorded_as_failed_empty_grid(name, tmp_path):
    result = tile_slide(SLIDES / name, tmp_path / "out.h5", record_failures=True)
    coords, attrs = read_coords(tmp_path / "out.h5")
    assert result.status.startswith("failed:") and attrs["status"] == result.status
    assert coords.shape == (0, 2) and coords.dtype == np.int64


def test_recorded_failure_leaves_no_temporary_files(tmp_path):
    tile_slide(SLIDES / "unreadable.svs", tmp_path / "out.h5", qc_png=tmp_path / "out.png", record_failures=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.h5", "out.png"]


def test_blank_white_slide_has_no_tissue(tmp_path):
    path = _tiff(tmp_path / "blank.tiff", np.full((1024, 768, 3), 255, np.uint8), mpp=0.5)
    result = tile_slide(path, tmp_path / "blank.h5")
    coords, attrs = read_coords(tmp_path / "blank.h5")
    assert (result.status, attrs["status"], coords.shape) == ("no_tissue", "no_tissue", (0, 2))
    assert result.mpp_source == "metadata"


def test_coords_h5_readable_by_plain_h5py_with_clam_attributes(cmu_tiled):
    result, h5, _ = cmu_tiled
    with h5py.File(h5, "r") as handle:
        dataset = handle["coords"]
        assert dataset.dtype == np.int64 and dataset.shape == (result.n_patches, 2)
        missing = [key for key in CLAM_TRIDENT_ATTRS if key not in dataset.attrs]
        assert missing == []
        assert dataset.attrs["name"] == "cmu-1-small-region"
        assert dataset.attrs["patch_level"] == 0 and dataset.attrs["patch_size"] == 257


def test_overview_is_the_largest_pyramid_level_within_budget():
    with open_slide(SLIDES / "boxes.tiff") as slide:
        overview, downsample = read_thumbnail(slide, max_pixels=20_000)
    assert overview.shape == (125, 150, 3) and downsample == 2.0


def test_overview_of_a_too_large_level_is_shrunk_band_by_band():
    with open_slide(CMU) as slide:
        whole, downsample = read_thumbnail(slide, max_pixels=200_000)
        banded, _ = read_thumbnail(slide, max_pixels=200_000, band_pixels=50_000)
    assert downsample == 6.0 and whole.shape == (2967 // 6, 2220 // 6, 3)
    np.testing.assert_array_equal(banded, whole)


def test_read_level_attributes_point_at_the_matching_pyramid_level(tmp_path):
    tile_slide(
        SLIDES / "boxes.tiff",
        tmp_path / "boxes.h5",
        mpp_override=5.0,
        target_mpp=10.0,
        patch_size=32,
        min_tissue_fraction=0.0,
    )
    coords, attrs = read_coords(tmp_path / "boxes.h5")
    assert len(coords) > 0
    assert (attrs["patch_size_level0"], attrs["patch_level"], attrs["patch_size"]) == (64, 1, 32)
    assert attrs["level_dim"] == (150, 125) and attrs["downsample"] == (2.0, 2.0)


def test_small_holes_are_filled_and_large_holes_kept():
    rgb = np.full((200, 200, 3), 255, np.uint8)
    rgb[20:180, 20:180] = (180, 60, 140)  # stained square
    rgb[40:44, 40:44] = 255  # 4 x 4 px hole
    rgb[80:150, 80:150] = 255  # 70 x 70 px hole
    params = TissueParams(median_kernel=1, closing_kernel=0, min_tissue_area_um2=10.0, min_hole_area_um2=100.0)
    mask = tissue_mask(rgb, params, pixel_area_um2=1.0)
    assert mask[40:44, 40:44].all()
    assert not mask[82:148, 82:148].any()
    assert mask[25:35, 25:35].all() and not mask[:15].any()


def test_qc_png_is_a_valid_image(cmu_tiled):
    _, _, png = cmu_tiled
    image = cv2.imread(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image is not None and image.ndim == 3 and min(image.shape[:2]) > 100


def test_manifest_rows_match_coords_files(cmu_tiled, tmp_path):
    result, h5, _ = cmu_tiled
    failed = tile_slide(SLIDES / "unopenable.tiff", tmp_path / "unopenable.h5", record_failures=True)
    write_manifest([h5, tmp_path / "unopenable.h5"], tmp_path / "manifest.csv")
    with open(tmp_path / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["slide"], row["status"], int(row["n_patches"])) for row in rows] == [
        (result.slide, "ok", result.n_patches),
        (failed.slide, failed.status, 0),
    ]
    assert float(rows[0]["slide_mpp"]) == 0.499 and rows[0]["mpp_source"] == "metadata"
    assert float(rows[0]["target_mpp"]) == 0.5 and float(rows[0]["seconds"]) == pytest.approx(result.seconds)
    assert rows[1]["slide_mpp"] == ""


class _RegionRecorder:
    """A real OpenSlide handle that records the size (px) of every region read through it."""

    def __init__(self, slide):
        self._slide = slide
        self.region_pixels: list[int] = []

    def __getattr__(self, name):
        return getattr(self._slide, name)

    def read_region(self, location, level, size):
        self.region_pixels.append(size[0] * size[1])
        return self._slide.read_region(location, level, size)


def test_overview_of_a_huge_smallest_level_never_reads_more_than_a_band():
    with open_slide(CMU) as slide:
        recorder = _RegionRecorder(slide)
        overview, downsample = read_thumbnail(recorder, max_pixels=100_000, band_pixels=60_000)
    assert overview.shape == (2967 // 9, 2220 // 9, 3) and downsample == 9.0
    assert len(recorder.region_pixels) > 10 and max(recorder.region_pixels) <= 60_000
