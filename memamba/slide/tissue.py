"""Tissue segmentation of a slide overview: saturation/Otsu threshold, ink rejection, smoothing, contour filters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

THRESHOLD_METHODS: tuple[str, ...] = ("saturation", "otsu")
PEN_HUES: dict[str, tuple[int, int]] = {"green": (40, 90), "blue": (100, 125)}
"""OpenCV hue ranges [lo, hi) (0-179) of marker ink; H&E lies outside them (eosin about 150-179 and
0-15, haematoxylin about 125-160)."""


@dataclass(frozen=True)
class TissueParams:
    """Settings of `tissue_mask`; lengths in overview px, areas in level-0 µm².

    threshold_method: "saturation" (fixed `saturation_threshold`) or "otsu" (Otsu's threshold on the
        saturation channel, never below `saturation_threshold`).
    saturation_threshold: HSV saturation (0-255) above which a pixel is tissue.
    white_threshold: pixels whose R, G and B all exceed this are background (glass, 0-255).
    black_threshold: pixels whose R, G and B all stay below this are excluded (black ink, folds,
        scanner borders); 0 keeps near-black pixels.
    reject_pen: exclude blue and green marker ink (hues PEN_HUES with chroma >= pen_min_chroma).
    pen_min_chroma: chroma max(R, G, B) - min(R, G, B) (0-255) from which a blue or green pixel is ink.
    median_kernel: median blur of the binary mask, odd size in px (1 = none).
    closing_kernel: morphological closing, square size in px (0 = none).
    min_tissue_area_um2: tissue pieces smaller than this (level-0 µm², holes subtracted) are dropped.
    min_hole_area_um2: holes smaller than this are filled; larger ones (lumen, fat) stay background;
        math.inf fills every hole.
    """

    threshold_method: str = "saturation"
    saturation_threshold: int = 8
    white_threshold: int = 220
    black_threshold: int = 50
    reject_pen: bool = False
    pen_min_chroma: int = 80
    median_kernel: int = 7
    closing_kernel: int = 5
    min_tissue_area_um2: float = 20_000.0
    min_hole_area_um2: float = 20_000.0

    def __post_init__(self) -> None:
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}, got {self.threshold_method!r}")
        if self.median_kernel < 1 or self.median_kernel % 2 == 0:
            raise ValueError(f"median_kernel must be an odd number >= 1, got {self.median_kernel}")
        if self.closing_kernel < 0:
            raise ValueError(f"closing_kernel must be >= 0, got {self.closing_kernel}")
        for name in ("saturation_threshold", "white_threshold", "black_threshold", "pen_min_chroma"):
            if not 0 <= getattr(self, name) <= 255:
                raise ValueError(f"{name} must lie in 0-255, got {getattr(self, name)}")
        if self.min_tissue_area_um2 < 0 or self.min_hole_area_um2 < 0:
            raise ValueError("min_tissue_area_um2 and min_hole_area_um2 must be >= 0")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TissueParams:
        """Parameters from a mapping of field names (e.g. the config's `tiling.tissue`); ValueError
        names an unknown key or a bad value."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ValueError(f"unknown tissue parameter(s) {', '.join(unknown)}; known: {known}")
        return cls(**values)

    def as_attrs(self) -> dict[str, str | float | int | bool]:
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
        binary = binary_median(binary, params.median_kernel)
    if params.closing_kernel > 0:
        kernel = np.ones((params.closing_kernel, params.closing_kernel), np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return _filter_contours(
        binary, params.min_tissue_area_um2 / pixel_area_um2, params.min_hole_area_um2 / pixel_area_um2
    )


def binary_median(binary: np.ndarray, kernel: int) -> np.ndarray:
    """Median blur of a 0/255 uint8 mask [h, w] with an odd square `kernel` (px), replicated borders.

    On a two-valued image the median is a majority vote, so a box sum (exact, int32) replaces the sort
    of cv2.medianBlur at a fraction of its cost; the result is identical.
    """
    counts = cv2.boxFilter(
        (binary > 0).astype(np.uint8), cv2.CV_32S, (kernel, kernel), normalize=False, borderType=cv2.BORDER_REPLICATE
    )
    return np.where(counts > kernel * kernel // 2, 255, 0).astype(np.uint8)


def _threshold(rgb: np.ndarray, params: TissueParams) -> np.ndarray:
    """uint8 mask (255 = tissue): saturated pixels that are neither near-white, near-black nor ink."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    saturation = np.ascontiguousarray(hsv[..., 1])
    threshold = params.saturation_threshold
    if params.threshold_method == "otsu":
        otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = max(threshold, int(otsu))
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    near_white = np.minimum(np.minimum(red, green), blue) > params.white_threshold
    near_black = np.maximum(np.maximum(red, green), blue) < params.black_threshold
    tissue = (saturation > threshold) & ~near_white & ~near_black
    if params.reject_pen:
        tissue &= ~pen_ink(rgb, hsv[..., 0], params.pen_min_chroma)
    return tissue.astype(np.uint8) * 255


def pen_ink(rgb: np.ndarray, hue: np.ndarray, min_chroma: int) -> np.ndarray:
    """Bool [h, w]: pixels of `rgb` uint8 [h, w, 3] whose OpenCV hue `hue` uint8 [h, w] is a marker-ink
    hue (PEN_HUES) and whose chroma (max - min of R, G, B) is >= `min_chroma`."""
    ink = np.zeros(hue.shape, bool)
    for low, high in PEN_HUES.values():
        ink |= (hue >= low) & (hue < high)
    chroma = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return ink & (chroma >= min_chroma)


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
