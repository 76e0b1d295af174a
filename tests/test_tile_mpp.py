"""Tiling resolution: mpp sources and their order, the per-slide mpp table, true-resolution patch reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from memamba.demo.svs import write_aperio_svs
from memamba.errors import InputError
from memamba.slide import MppEntry, open_slide, read_coords, read_mpp_table, read_patch, resolve_mpp, tile_slide

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu-1-small-region.svs"


def _tissue_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Glass-white image uint8 [height, width, 3] with a textured pink-purple disc filling its middle."""
    rng = np.random.default_rng(seed)
    rgb = np.full((height, width, 3), 240, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (0.4 * min(height, width)) ** 2
    texture = rng.integers(-40, 40, (height, width, 1))
    rgb[disc] = np.clip(np.array([190, 90, 170]) + texture[disc], 0, 255).astype(np.uint8)
    return rgb


def _pyramid_tiff(path: Path, levels: list[np.ndarray], mpp: float | None) -> Path:
    """Generic tiled TIFF (lossless) with one page per pyramid level; level-0 µm/px in its resolution tags."""
    with tifffile.TiffWriter(path) as writer:
        for index, level in enumerate(levels):
            scale = level.shape[1] / levels[0].shape[1]
            tags = {} if mpp is None else {"resolution": (1e4 * scale / mpp, 1e4 * scale / mpp)}
            writer.write(
                level,
                photometric="rgb",
                tile=(256, 256),
                compression="zlib",
                subfiletype=0 if index == 0 else 1,
                resolutionunit="CENTIMETER" if mpp is not None else None,
                metadata=None,
                **tags,
            )
    return path


def _objective_only_svs(path: Path, rgb: np.ndarray, app_mag: int) -> Path:
    """Aperio SVS whose description has AppMag but no MPP field."""
    height, width = rgb.shape[:2]
    description = f"Aperio Image Library v12.0.16\r\n{width}x{height} (256x256) JPEG/RGB Q=85|AppMag = {app_mag}"
    tifffile.imwrite(
        path, rgb, photometric="rgb", tile=(256, 256), compression="jpeg", description=description, metadata=None
    )
    return path


def _table(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def plain_tiff(tmp_path_factory) -> Path:
    """1024 x 1024 tissue TIFF with no pixel size at all."""
    return _pyramid_tiff(tmp_path_factory.mktemp("plain") / "plain.tiff", [_tissue_rgb(1024, 1024)], mpp=None)


def test_mpp_table_fills_in_a_slide_without_metadata(plain_tiff, tmp_path):
    table = _table(tmp_path / "mpp.csv", "slide,mpp\nplain,0.25\n")
    result = tile_slide(plain_tiff, tmp_path / "plain.h5", mpp_table=table)
    _, attrs = read_coords(tmp_path / "plain.h5")
    assert (result.slide_mpp, result.mpp_source) == (0.25, "table")
    assert (attrs["slide_mpp"], attrs["mpp_source"], attrs["patch_size_level0"]) == (0.25, "table", 512)


def test_metadata_wins_over_an_unforced_table_row(tmp_path):
    table = _table(tmp_path / "mpp.csv", "slide,mpp\ncmu-1-small-region.svs,0.3\n")
    result = tile_slide(CMU, tmp_path / "cmu.h5", mpp_table=table)
    assert (result.slide_mpp, result.mpp_source) == (0.499, "metadata")


def test_forced_table_row_wins_over_absurd_metadata(tmp_path):
    table = _table(tmp_path / "mpp.csv", "slide,mpp,force\nboxes,5.0,true\n")
    result = tile_slide(SLIDES / "boxes.tiff", tmp_path / "boxes.h5", mpp_table=table, target_mpp=10.0, patch_size=16)
    assert (result.status, result.slide_mpp, result.mpp_source) == ("ok", 5.0, "table_forced")


def test_objective_power_wins_over_an_unforced_table_row(tmp_path):
    slide = _objective_only_svs(tmp_path / "mag.svs", _tissue_rgb(512, 512), app_mag=20)
    with open_slide(slide) as handle:
        assert resolve_mpp(handle, table_entry=MppEntry(0.3)) == (0.5, "objective_power")
        assert resolve_mpp(handle, table_entry=MppEntry(0.3, force=True)) == (0.3, "table_forced")


def test_override_wins_over_every_other_source():
    with open_slide(CMU) as handle:
        assert resolve_mpp(handle, override=0.3, table_entry=MppEntry(0.2, force=True)) == (0.3, "override")


def test_default_is_the_last_resort(plain_tiff):
    with open_slide(plain_tiff) as handle:
        assert resolve_mpp(handle, default=0.4) == (0.4, "default")
        assert resolve_mpp(handle, table_entry=MppEntry(0.25), default=0.4) == (0.25, "table")


def test_slide_without_any_mpp_source_is_an_error_naming_the_fix(plain_tiff):
    with open_slide(plain_tiff) as handle, pytest.raises(InputError, match=r"plain\.tiff.*mpp table"):
        resolve_mpp(handle)


def test_anisotropic_metadata_is_rejected(tmp_path):
    path = tmp_path / "stretched.tiff"
    tifffile.imwrite(
        path,
        _tissue_rgb(512, 512),
        photometric="rgb",
        tile=(256, 256),
        resolution=(1e4 / 0.25, 1e4 / 0.5),
        resolutionunit="CENTIMETER",
    )
    with open_slide(path) as handle, pytest.raises(InputError, match=r"stretched\.tiff.*isotropic"):
        resolve_mpp(handle)


def test_absurd_default_is_rejected(plain_tiff):
    with open_slide(plain_tiff) as handle, pytest.raises(InputError, match="outside"):
        resolve_mpp(handle, default=250.0)


def test_mpp_table_matches_file_names_and_ids_alike(tmp_path):
    table = read_mpp_table(_table(tmp_path / "mpp.csv", "slide,mpp,force\na.svs,0.25,\nb,0.5,yes\n"))
    assert table == {"a": MppEntry(0.25, False), "b": MppEntry(0.5, True)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("slide,mpp\na,0.25\nb,abc\n", r"row 3, column mpp"),
        ("slide,mpp\na,0.25\nb,900\n", r"row 3, column mpp"),
        ("slide,mpp\na,0.25\na.svs,0.5\n", r"row 3.*listed twice"),
        ("slide,mpp,force\na,0.25,maybe\n", r"row 2, column force"),
        ("slide,pixel\na,0.25\n", r"lacks column.*mpp"),
    ],
)
def test_bad_mpp_table_names_file_and_row(tmp_path, text, message):
    with pytest.raises(InputError, match=rf"mpp\.csv.*{message}"):
        read_mpp_table(_table(tmp_path / "mpp.csv", text))


def test_cli_mpp_table_is_used_and_a_bad_one_exits_2_writing_nothing(plain_tiff, tmp_path):
    good = _table(tmp_path / "good.csv", "slide,mpp\nplain,0.25\n")
    bad = _table(tmp_path / "bad.csv", "slide,mpp\nplain,zero\n")
    command = [sys.executable, "-m", "memamba", "tile", str(plain_tiff), "--record-failures"]
    ok = subprocess.run([*command, "-o", str(tmp_path / "ok.h5"), "--mpp-table", str(good)], capture_output=True)
    assert ok.returncode == 0 and read_coords(tmp_path / "ok.h5")[1]["mpp_source"] == "table"
    failed = subprocess.run(
        [*command, "-o", str(tmp_path / "bad.h5"), "--mpp-table", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 2 and "bad.csv: row 2, column mpp" in failed.stderr
    assert not (tmp_path / "bad.h5").exists()


def test_40x_slide_without_a_20x_level_gives_true_20x_patches(tmp_path):
    path = tmp_path / "forty.svs"
    write_aperio_svs(path, _tissue_rgb(2048, 2048), mpp=0.25, app_mag=40, quality=95)
    tile_slide(path, tmp_path / "forty.h5", target_mpp=0.5, patch_size=256)
    coords, attrs = read_coords(tmp_path / "forty.h5")
    with open_slide(path) as slide:
        assert slide.level_downsamples == (1.0, 4.0)
        corner = tuple(int(value) for value in coords[len(coords) // 2])
        patch = read_patch(slide, corner, attrs["patch_size_level0"], attrs["target_patch_size"])
        level0 = np.asarray(slide.read_region(corner, 0, (512, 512)).convert("RGB"))
    assert (attrs["patch_size_level0"], attrs["patch_level"], attrs["patch_size"]) == (512, 0, 512)
    assert patch.shape == (256, 256, 3)
    np.testing.assert_array_equal(patch, cv2.resize(level0, (256, 256), interpolation=cv2.INTER_AREA))


def test_patch_read_from_a_2x_level_equals_resized_level0_read(tmp_path):
    level0 = _tissue_rgb(2048, 2048, seed=1)
    level1 = cv2.resize(level0, (1024, 1024), interpolation=cv2.INTER_AREA)
    path = _pyramid_tiff(tmp_path / "two.tiff", [level0, level1], mpp=0.25)
    tile_slide(path, tmp_path / "two.h5", target_mpp=0.5, patch_size=256)
    coords, attrs = read_coords(tmp_path / "two.h5")
    assert (attrs["patch_level"], attrs["patch_size"], attrs["downsample"]) == (1, 256, (2.0, 2.0))
    with open_slide(path) as slide:
        for x, y in coords[:: max(1, len(coords) // 5)]:
            patch = read_patch(slide, (int(x), int(y)), 512, 256)
            expected = cv2.resize(level0[y : y + 512, x : x + 512], (256, 256), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(patch, expected)


def test_patch_read_composites_transparent_area_on_white(tmp_path):
    shutil.copy(SLIDES / "boxes.tiff", tmp_path / "boxes.tiff")
    with open_slide(tmp_path / "boxes.tiff") as slide:
        patch = read_patch(slide, (280, 230), 64, 32)
    assert patch.shape == (32, 32, 3) and (patch[-4:, -4:] == 255).all()
