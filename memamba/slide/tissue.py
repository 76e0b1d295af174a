"""Tissue segmentation of a slide overview: HSV saturation threshold, smoothing, contour filtering."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TissueParams:
    """Settings of `tissue_mask`; lengths in overview px, areas in level-0 µm².

    saturation_threshold: HSV saturation (0-255) above which a pixel is tissue.
    use_otsu: pick the threshold by Otsu's method instead (never below `saturation_threshold`).
    white_threshold: pixels whose R, G and B all exceed this are background (glass, 0-255).
    black_threshold: pixels whose R, G and B all stay below this are excluded (pen, folds, borders).
    median_kernel: median blur of the binary mask, odd size in px (1 = none).
    closing_kernel: morphological closing, square size in px (0 = none).
    min_tissue_area_um2: tissue pieces smaller than this (level-0 µm², holes subtracted) are dropped.
    min_hole_area_um2: holes smaller than this are filled; larger ones (lumen, fat) stay background;
        math.inf fills every hole.
    """

    saturation_threshold: int = 8
    use_otsu: bool = False
    white_threshold: int = 220
    black_threshold: int = 50
    median_kernel: int = 7
    closing_kernel: int = 5
    min_tissue_area_um2: float = 20_000.0
    min_hole_area_um2: float = 20_000.0

    def __post_init__(self) -> None:
        if self.median_kernel < 1 or self.median_kernel % 2 == 0:
            raise ValueError(f"median_kernel must be an odd number >= 1, got {self.median_kernel}")
        if self.closing_kernel < 0:
            raise ValueError(f"closing_kernel must be >= 0, got {self.closing_kernel}")
        for name in ("saturation_threshold", "white_threshold", "black_threshold"):
            if not 0 <= getattr(self, name) <= 255:
                raise ValueError(f"{name} must lie in 0-255, got {getattr(self, name)}")
        if self.min_tissue_area_um2 < 0 or self.min_hole_area_um2 < 0:
            raise ValueError("min_tissue_area_um2 and min_hole_area_um2 must be >= 0")

    def as_attrs(self) -> dict[str, float | int | bool]:
        """Parameters as `tissue_<name>` attributes for an output file."""
        return {f"tissue_{name}": value for name, value in asdict(self).items()}


def tissue_mask(rgb: np.ndarray, params: TissueParams, *, pixel_area_um2: float) -> np.ndarray:
    """Boolean tissue mask [h, w] of an RGB overview uint8 [h, w, 3].

    `pixel_area_um2` is the level-0 area covered by one overview pixel (µm²), used to turn the
    area limits of `params` into pixels.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [h, w, 3], got {rgb.dtype} {rgb.shape}")
    binary = _threshold(rgb, params)
    if params.median_kernel > 1:
        binary = cv2.medianBlur(binary, params.median_kernel)
    if params.closing_kernel > 0:
        kernel = np.ones((params.closing_kernel, params.closing_kernel), np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return _filter_contours(
        binary, params.min_tissue_area_um2 / pixel_area_um2, params.min_hole_area_um2 / pixel_area_um2
    )


def _threshold(rgb: np.ndarray, params: TissueParams) -> np.ndarray:
    """uint8 mask (255 = tissue): saturated pixels that are neither near-white nor near-black."""
    saturation = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1])
    threshold = params.saturation_threshold
    if params.use_otsu:
        otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = max(threshold, int(otsu))
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    near_white = np.minimum(np.minimum(red, green), blue) > params.white_threshold
    near_black = np.maximum(np.maximum(red, green), blue) < params.black_threshold
    tissue = (saturation > threshold) & ~near_white & ~near_black
    return tissue.astype(np.uint8) * 255


def _filter_contours(binary: np.ndarray, min_area_px: float, min_hole_px: float) -> np.ndarray:
    """Keep pieces with net area >= `min_area_px`, filling their holes smaller than `min_hole_px`."""
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros(binary.shape, np.uint8)
    if hierarchy is None:
        return mask.astype(bool)
    links = hierarchy[0]  # per contour: next sibling, previous sibling, first child, parent
    for index in np.flatnonzero(links[:, 3] == -1):
        holes = []
        child = links[index, 2]
        while child != -1:
            holes.append(contours[child])
            child = links[child, 0]
        kept_holes = [hole for hole in holes if cv2.contourArea(hole) >= min_hole_px]
        area = cv2.contourArea(contours[index]) - sum(cv2.contourArea(hole) for hole in kept_holes)
        if area >= min_area_px:
            cv2.fillPoly(mask, [contours[index], *kept_holes], 1)
    return mask.astype(bool)
