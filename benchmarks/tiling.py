"""Tiling speed: memamba's integral-image patch grid vs a per-patch point-in-contour grid (CLAM's approach).

Usage: python benchmarks/tiling.py [--cache benchmarks/.cache] [--repeats 3]

Slides: the real slides of tests/data/slides and a generated 40x Aperio SVS of 100,000 x 80,000 px (JPEG
tiles, 4x pyramid; written once into --cache, which git ignores). Everything runs on one core.
For each slide, in the same run:
- memamba: `tile_slide` end to end (open, mpp, overview read, tissue mask, grid, coords h5), and the
  grid step alone (`patch_grid`, a summed-area table over the mask);
- baseline: the same pipeline with the grid step replaced by CLAM's: tissue contours and holes (RETR_CCOMP,
  CHAIN_APPROX_NONE) scaled to level 0, then for every grid position inside a contour's bounding box,
  cv2.pointPolygonTest of four points around the patch centre against the contour ("four_pt") and of the
  centre against each hole, in a Python loop.
Times are medians over --repeats runs; the baseline end-to-end time is memamba's minus its grid step
plus the baseline grid step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import tifffile

from memamba.demo.svs import aperio_description
from memamba.io import atomic_output
from memamba.slide import TissueParams, open_slide, patch_grid, read_thumbnail, tile_slide, tissue_mask
from memamba.slide.open import resolve_mpp

ROOT = Path(__file__).resolve().parents[1]
TINY = TissueParams(median_kernel=1, closing_kernel=0, min_tissue_area_um2=0.0)
"""Segmentation settings for the 16 x 16 px fixtures, which the default area filter would empty."""
REAL_SLIDES = {  # name: (file, tile_slide keyword arguments)
    "cmu-1-small-region.svs (real H&E)": ("cmu-1-small-region.svs", {}),
    "small.svs": ("small.svs", {"patch_size": 4, "min_tissue_fraction": 0.1, "tissue": TINY}),
    "boxes_0.dcm (DICOM)": (
        "boxes_0.dcm",
        {"target_mpp": 1.0, "patch_size": 4, "min_tissue_fraction": 0.1, "tissue": TINY},
    ),
    "boxes.tiff (mpp override 4.0)": ("boxes.tiff", {"mpp_override": 4.0, "target_mpp": 8.0, "patch_size": 16}),
}
BIG_SIZE = (100_000, 80_000)
"""Level-0 (width, height) px of the generated slide, 0.25 µm/px (40x): a large TCGA diagnostic slide."""
TILE = 256
DOWNSAMPLES = (1, 4, 16, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the forced mpp of boxes.tiff would warn on every repeat
    cv2.setNumThreads(1)

    big = args.cache / "synthetic_40x_100000x80000.svs"
    if not big.exists():
        started = time.perf_counter()
        write_big_svs(big)
        print(f"generated {big.name}: {big.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - started:.0f} s")
    slides = {name: (ROOT / "tests" / "data" / "slides" / file, kwargs) for name, (file, kwargs) in REAL_SLIDES.items()}
    slides["synthetic 40x 100,000 x 80,000 SVS"] = (big, {})

    print(
        "| slide | patches | memamba s/slide | baseline s/slide | end-to-end ratio | memamba grid ms "
        "| baseline grid ms | grid ratio | memamba patches/s | baseline patches (same mask) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals = {"memamba": 0.0, "baseline": 0.0}
    for name, (path, kwargs) in slides.items():
        row = measure(path, kwargs, args.repeats)
        totals["memamba"] += row["total"]
        totals["baseline"] += row["baseline_total"]
        print(
            f"| {name} | {row['patches']} | {row['total']:.3f} | {row['baseline_total']:.3f} "
            f"| {row['baseline_total'] / row['total']:.1f}x | {1e3 * row['grid']:.2f} "
            f"| {1e3 * row['baseline_grid']:.1f} "
            f"| {row['baseline_grid'] / row['grid']:.1f}x | {row['patches'] / row['total']:,.0f} "
            f"| {row['baseline_patches']} |"
        )
    count = len(slides)
    print(
        f"\nall {count} slides: memamba {count / totals['memamba']:.2f} slides/s, "
        f"baseline {count / totals['baseline']:.2f} slides/s ({totals['baseline'] / totals['memamba']:.1f}x)"
    )


def measure(path: Path, kwargs: dict, repeats: int) -> dict[str, float]:
    """Median end-to-end and grid-step times (s) of memamba and the baseline on one slide."""
    totals, patches = [], 0
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            started = time.perf_counter()
            result = tile_slide(path, Path(folder) / "coords.h5", **kwargs)
            totals.append(time.perf_counter() - started)
            patches = result.n_patches
    mask, downsample, size, side, step = _mask_and_geometry(path, kwargs)
    grid = _median(
        lambda: patch_grid(mask, downsample, size, side, step, kwargs.get("min_tissue_fraction", 0.5)), repeats
    )
    baseline_grid = _median(lambda: point_in_contour_grid(mask, downsample, size, side, step), repeats)
    total = statistics.median(totals)
    return {
        "patches": patches,
        "total": total,
        "grid": grid,
        "baseline_grid": baseline_grid,
        "baseline_total": total - grid + baseline_grid,
        "baseline_patches": len(point_in_contour_grid(mask, downsample, size, side, step)),
    }


def _mask_and_geometry(path: Path, kwargs: dict) -> tuple[np.ndarray, float, tuple[int, int], int, int]:
    """Tissue mask, its downsample, level-0 size and patch side/step (level-0 px) as `tile_slide` makes them."""
    with open_slide(path) as slide:
        mpp, _ = resolve_mpp(slide, override=kwargs.get("mpp_override"))
        overview, downsample = read_thumbnail(slide)
        size = slide.dimensions
    mask = tissue_mask(overview, kwargs.get("tissue", TissueParams()), pixel_area_um2=(mpp * downsample) ** 2)
    side = round(kwargs.get("patch_size", 256) * kwargs.get("target_mpp", 0.5) / mpp)
    return mask, downsample, size, side, side


def _median(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def point_in_contour_grid(
    mask: np.ndarray, downsample: float, level0_size: tuple[int, int], side: int, step: int
) -> list[tuple[int, int]]:
    """CLAM-style grid: per patch, four points around its centre tested against each tissue contour
    (any inside keeps it) and its centre against the contour's holes (inside any drops it)."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    links = hierarchy[0]
    scaled = [(contour * downsample).astype(np.int32) for contour in contours]
    width, height = level0_size
    shift = side // 2 * 0.5
    kept = []
    for index in np.flatnonzero(links[:, 3] == -1):
        contour = scaled[index]
        holes = []
        child = links[index, 2]
        while child != -1:
            holes.append(scaled[child])
            child = links[child, 0]
        x, y, w, h = cv2.boundingRect(contour)
        for top in range(y, min(y + h, height - side + 1), step):
            for left in range(x, min(x + w, width - side + 1), step):
                cx, cy = left + side // 2, top + side // 2
                points = (
                    (cx - shift, cy - shift),
                    (cx + shift, cy - shift),
                    (cx - shift, cy + shift),
                    (cx + shift, cy + shift),
                )
                if not any(cv2.pointPolygonTest(contour, point, False) >= 0 for point in points):
                    continue
                if any(cv2.pointPolygonTest(hole, (float(cx), float(cy)), False) > 0 for hole in holes):
                    continue
                kept.append((left, top))
    return kept


def write_big_svs(path: Path, size: tuple[int, int] = BIG_SIZE) -> None:
    """Write a 40x (0.25 µm/px) Aperio SVS of `size` level-0 px with levels at DOWNSAMPLES, atomically.

    A tissue layout drawn at the coarsest level decides every tile: the two coarsest levels are rendered
    pixel by pixel from it; the finer ones repeat a few pre-encoded JPEG tiles (tissue where the layout is
    tissue at the tile centre, glass elsewhere), so writing is mostly I/O.
    """
    width, height = size
    coarse = (width // DOWNSAMPLES[-1], height // DOWNSAMPLES[-1])
    layout = _tissue_layout(coarse)
    textures = [_encode(_texture(seed)) for seed in range(4)]
    glass = _encode(np.full((TILE, TILE, 3), 242, np.uint8))
    with atomic_output(path) as temporary, tifffile.TiffWriter(temporary, bigtiff=True) as writer:
        for downsample in DOWNSAMPLES:
            level_size = (width // downsample, height // downsample)
            description = aperio_description(
                level_size, size, tile_size=TILE, quality=80, mpp=0.25, app_mag=40, properties={}
            )
            common = {
                "photometric": "rgb",
                "tile": (TILE, TILE),
                "compression": "jpeg",
                "description": description,
                "metadata": None,
                "software": False,
                "subfiletype": 0,
            }
            if downsample >= 16:
                writer.write(_render(layout, level_size), compressionargs={"level": 80}, **common)
            else:
                tiles = _tile_stream(layout, level_size, downsample, textures, glass)
                writer.write(tiles, shape=(level_size[1], level_size[0], 3), dtype=np.uint8, **common)


def _tissue_layout(size: tuple[int, int]) -> np.ndarray:
    """Bool [h, w] at the coarsest level: three irregular tissue pieces with holes and small debris."""
    width, height = size
    rng = np.random.default_rng(0)
    layout = np.zeros((height, width), np.uint8)
    for cx, cy, rx, ry in ((0.28, 0.5, 0.2, 0.36), (0.62, 0.4, 0.16, 0.25), (0.78, 0.72, 0.12, 0.18)):
        angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
        radius = 1 + 0.15 * np.convolve(rng.normal(size=90), np.ones(7) / 7, mode="same")
        points = np.stack(
            [(cx + rx * radius * np.cos(angles)) * width, (cy + ry * radius * np.sin(angles)) * height], axis=1
        )
        cv2.fillPoly(layout, [points.astype(np.int32)], 1)
        for _ in range(4):
            hole = (int((cx + rng.uniform(-0.5, 0.5) * rx) * width), int((cy + rng.uniform(-0.5, 0.5) * ry) * height))
            cv2.ellipse(layout, hole, (int(rng.uniform(8, 30)), int(rng.uniform(8, 30))), 0, 0, 360, 0, -1)
    for _ in range(40):
        cv2.circle(layout, (int(rng.uniform(0, width)), int(rng.uniform(0, height))), int(rng.uniform(1, 4)), 1, -1)
    return layout.astype(bool)


def _texture(seed: int) -> np.ndarray:
    """One 256 x 256 H&E-like tile: pink stroma with purple nuclei."""
    rng = np.random.default_rng(seed)
    tile = np.empty((TILE, TILE, 3), np.uint8)
    tile[:] = (225, 160, 200)
    for _ in range(60):
        centre = (int(rng.integers(0, TILE)), int(rng.integers(0, TILE)))
        cv2.circle(tile, centre, int(rng.integers(3, 7)), (120, 60, 160), -1)
    return cv2.GaussianBlur(tile, (3, 3), 0)


def _encode(tile: np.ndarray) -> bytes:
    return imagecodecs.jpeg8_encode(tile, level=80)


def _tile_stream(
    layout: np.ndarray, level_size: tuple[int, int], downsample: int, textures: list[bytes], glass: bytes
) -> Iterator[bytes]:
    """Pre-encoded JPEG tiles of one level in row-major order, chosen by the layout at each tile centre."""
    width, height = level_size
    scale = downsample / DOWNSAMPLES[-1]
    for row in range((height + TILE - 1) // TILE):
        y = min(int((row + 0.5) * TILE * scale), layout.shape[0] - 1)
        for col in range((width + TILE - 1) // TILE):
            x = min(int((col + 0.5) * TILE * scale), layout.shape[1] - 1)
            yield textures[(row * 7 + col) % len(textures)] if layout[y, x] else glass


def _render(layout: np.ndarray, level_size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [h, w, 3] of a coarse level: textured tissue where the layout says so, glass elsewhere."""
    width, height = level_size
    tissue = cv2.resize(layout.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    texture = np.tile(_texture(0), ((height + TILE - 1) // TILE, (width + TILE - 1) // TILE, 1))[:height, :width]
    image = np.full((height, width, 3), 242, np.uint8)
    image[tissue] = texture[tissue]
    return image


if __name__ == "__main__":
    main()
