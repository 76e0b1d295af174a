"""Tissue segmentation options: threshold method, marker-ink and near-black rejection, CLI settings."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from memamba.slide import TissueParams, open_slide, read_coords, read_thumbnail, tissue_mask
from memamba.slide.tissue import binary_median

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu-1-small-region.svs"
PLAIN = TissueParams(median_kernel=1, closing_kernel=0, min_tissue_area_um2=0.0, min_hole_area_um2=0.0)
"""No smoothing or area filters, so a test sees the pixel rules alone."""

H_AND_E = (200, 110, 180)
INKS = {"blue": (40, 70, 170), "green": (50, 150, 70), "black": (25, 25, 35)}


def _stained_with_ink() -> np.ndarray:
    """White overview uint8 [120, 300, 3]: an H&E-coloured square, then a stripe of each ink."""
    rgb = np.full((120, 300, 3), 245, np.uint8)
    rgb[10:110, 10:110] = H_AND_E
    for index, colour in enumerate(INKS.values()):
        left = 130 + 55 * index
        rgb[10:110, left : left + 40] = colour
    return rgb


def _ink_kept(mask: np.ndarray) -> dict[str, bool]:
    return {name: bool(mask[10:110, 130 + 55 * i : 170 + 55 * i].any()) for i, name in enumerate(INKS)}


def test_blue_and_green_ink_count_as_tissue_unless_rejected():
    rgb = _stained_with_ink()
    kept = tissue_mask(rgb, PLAIN, pixel_area_um2=1.0)
    rejected = tissue_mask(rgb, replace(PLAIN, reject_pen=True), pixel_area_um2=1.0)
    assert _ink_kept(kept) == {"blue": True, "green": True, "black": False}
    assert _ink_kept(rejected) == {"blue": False, "green": False, "black": False}
    assert rejected[10:110, 10:110].all()


def test_near_black_exclusion_can_be_switched_off():
    rgb = _stained_with_ink()
    mask = tissue_mask(rgb, replace(PLAIN, black_threshold=0), pixel_area_um2=1.0)
    assert _ink_kept(mask)["black"]


def test_pen_rejection_leaves_real_h_and_e_almost_unchanged():
    with open_slide(CMU) as slide:
        overview, downsample = read_thumbnail(slide)
    area = (0.499 * downsample) ** 2
    plain = tissue_mask(overview, TissueParams(), pixel_area_um2=area)
    rejected = tissue_mask(overview, TissueParams(reject_pen=True), pixel_area_um2=area)
    assert (plain & rejected).sum() / (plain | rejected).sum() > 0.99


def test_otsu_threshold_drops_a_faint_background_tint_that_the_fixed_threshold_keeps():
    rgb = np.full((100, 200, 3), 232, np.uint8)
    rgb[..., 2] = 220  # faint yellowish glass tint: saturation about 13
    rgb[:, :100] = (200, 100, 170)
    fixed = tissue_mask(rgb, PLAIN, pixel_area_um2=1.0)
    otsu = tissue_mask(rgb, replace(PLAIN, threshold_method="otsu"), pixel_area_um2=1.0)
    assert fixed.all()
    assert otsu[:, :100].all() and not otsu[:, 100:].any()


@pytest.mark.parametrize(
    ("values", "message"),
    [({"reject_pens": True}, "unknown tissue parameter"), ({"threshold_method": "triangle"}, "threshold_method")],
)
def test_bad_tissue_settings_are_rejected_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        TissueParams.from_mapping(values)


def test_cli_tissue_settings_reach_the_coords_attributes(tmp_path):
    settings = json.dumps({"reject_pen": True, "threshold_method": "otsu"})
    command = [sys.executable, "-m", "memamba", "tile", str(CMU), "-o", str(tmp_path / "cmu.h5"), "--tissue", settings]
    subprocess.run(command, check=True, capture_output=True)
    _, attrs = read_coords(tmp_path / "cmu.h5")
    assert (attrs["tissue_reject_pen"], attrs["tissue_threshold_method"]) == (True, "otsu")


def test_cli_bad_tissue_json_exits_2_naming_the_option(tmp_path):
    command = [sys.executable, "-m", "memamba", "tile", str(CMU), "-o", str(tmp_path / "cmu.h5"), "--tissue", "{bad"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "--tissue" in result.stderr and not (tmp_path / "cmu.h5").exists()


@pytest.mark.parametrize("kernel", [3, 5, 7, 9])
def test_binary_median_equals_opencv_median_blur(kernel):
    rng = np.random.default_rng(kernel)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (151, 203), dtype=np.uint8), (5, 5), 0)
    binary = np.where(noise > 127, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(binary_median(binary, kernel), cv2.medianBlur(binary, kernel))
