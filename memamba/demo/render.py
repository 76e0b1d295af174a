"""Synthetic H&E tissue images whose nuclei (density, size, darkness, pleomorphism) follow a latent risk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29], dtype=np.float32)
"""Optical density of hematoxylin per unit concentration (R, G, B; Ruifrok & Johnston stain vector)."""
EOSIN_OD = np.array([0.07, 0.99, 0.11], dtype=np.float32)
"""Optical density of eosin per unit concentration (R, G, B)."""
BACKGROUND_OD = np.float32(0.035)
"""Glass and mounting medium: a near-white (about 246/255) background."""


@dataclass(frozen=True)
class NucleusStyle:
    """Tumour-nucleus appearance at one risk level."""

    density_per_mm2: float
    """Nuclei per mm² of fully cellular tissue."""
    radius_um: float
    """Median nucleus radius (µm)."""
    radius_spread: float
    """Standard deviation of log radius (pleomorphism)."""
    max_elongation: float
    """Largest ratio of long to short axis."""
    hematoxylin: float
    """Mean hematoxylin concentration inside a nucleus (optical density units per stain vector)."""
    chromatin_contrast: float
    """Relative amplitude of the granular chromatin texture."""


def risk_to_unit(latent_risk: float) -> float:
    """Map a latent risk z (about N(0, 1)) monotonically to (0, 1): a logistic curve close to Φ(z)."""
    return float(1.0 / (1.0 + np.exp(-1.7 * latent_risk)))


def nucleus_style(latent_risk: float) -> NucleusStyle:
    """Nucleus style of a patient: every field increases monotonically with the latent risk z."""
    t = risk_to_unit(latent_risk)
    return NucleusStyle(
        density_per_mm2=2500.0 + 7500.0 * t,
        radius_um=2.8 + 2.2 * t,
        radius_spread=0.08 + 0.30 * t,
        max_elongation=1.2 + 0.8 * t,
        hematoxylin=0.55 + 0.75 * t,
        chromatin_contrast=0.10 + 0.45 * t,
    )


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell_px: float) -> np.ndarray:
    """Smooth random field [height, width] float32 in [0, 1] with features about `cell_px` pixels wide."""
    import cv2

    coarse = rng.random((max(2, round(height / cell_px) + 2), max(2, round(width / cell_px) + 2)))
    field = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def tissue_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Boolean mask [height, width] of 2-4 irregular tissue blobs covering 40-55% of the image."""
    import cv2

    grid_h, grid_w = max(8, height // 16), max(8, width // 16)
    ys, xs = np.mgrid[0:grid_h, 0:grid_w].astype(np.float32)
    ys, xs = ys / grid_h, xs / grid_w
    field = np.zeros((grid_h, grid_w), dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.8)
        ry, rx = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35)
        angle = rng.uniform(0.0, np.pi)
        dy, dx = ys - cy, xs - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        field = np.maximum(field, 1.0 - np.sqrt(u * u + v * v))
    field += 0.35 * smooth_noise(rng, grid_h, grid_w, grid_w / 5) + 0.1 * smooth_noise(rng, grid_h, grid_w, grid_w / 25)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    coverage = rng.uniform(0.40, 0.55)
    return field > np.quantile(field[::8, ::8], 1.0 - coverage)


def stroma_eosin(rng: np.random.Generator, mask: np.ndarray, mpp: float) -> np.ndarray:
    """Eosin concentration [H, W] float32: fibrous stroma texture inside `mask`, soft edges, 0 outside."""
    import cv2

    height, width = mask.shape
    noise = rng.standard_normal((height, width), dtype=np.float32)
    along = max(3.0, 6.0 / mpp)
    across = max(0.5, 0.6 / mpp)
    fibres_x = cv2.GaussianBlur(noise, (0, 0), sigmaX=along, sigmaY=across)
    fibres_y = cv2.GaussianBlur(noise, (0, 0), sigmaX=across, sigmaY=along)
    orientation = np.clip(4.0 * smooth_noise(rng, height, width, 150.0 / mpp) - 1.5, 0.0, 1.0)
    fibres = orientation * fibres_x + (1.0 - orientation) * fibres_y
    fibres /= max(float(fibres.std()), 1e-6)
    density = 0.22 + 0.20 * smooth_noise(rng, height, width, 60.0 / mpp)
    eosin = np.clip(density + 0.12 * fibres, 0.03, None)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=3.0 / mpp)
    return eosin * soft


def draw_nuclei(
    rng: np.random.Generator,
    canvas: np.ndarray,
    centres: np.ndarray,
    radii_px: np.ndarray,
    elongation: np.ndarray,
    darkness: np.ndarray,
) -> None:
    """Draw filled ellipses into `canvas` [H, W] uint8 (hematoxylin in 1/100 units) at centres [N, 2] (x, y)."""
    import cv2

    angles = rng.uniform(0.0, 180.0, len(centres))
    for (x, y), radius, stretch, dark, angle in zip(
        centres, radii_px, elongation, darkness, angles, strict=True
    ):
        axes = (max(1, round(radius * np.sqrt(stretch))), max(1, round(radius / np.sqrt(stretch))))
        cv2.ellipse(canvas, (int(x), int(y)), axes, float(angle), 0, 360, int(dark), -1, cv2.LINE_AA)


def sample_positions(rng: np.random.Generator, weight: np.ndarray, count: int) -> np.ndarray:
    """Draw `count` pixel positions [count, 2] (x, y) with probability proportional to `weight` [H, W]."""
    flat = weight.ravel().astype(np.float64)
    total = flat.sum()
    if count == 0 or total <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    cumulative = np.cumsum(flat)
    picks = np.searchsorted(cumulative, rng.random(count) * total, side="right")
    picks = np.minimum(picks, flat.size - 1)
    return np.stack([picks % weight.shape[1], picks // weight.shape[1]], axis=1)


def nuclei_hematoxylin(rng: np.random.Generator, mask: np.ndarray, latent_risk: float, mpp: float) -> np.ndarray:
    """Hematoxylin concentration [H, W] float32 of tumour nuclei (risk-driven) and stromal fibroblasts."""
    import cv2

    style = nucleus_style(latent_risk)
    height, width = mask.shape
    mm2_per_px = (mpp * 1e-3) ** 2
    cellularity = mask * smooth_noise(rng, height, width, 120.0 / mpp) ** 1.5
    n_tumour = int(rng.poisson(style.density_per_mm2 * float(cellularity.sum()) * mm2_per_px))
    radii = style.radius_um / mpp * np.exp(style.radius_spread * rng.standard_normal(n_tumour))
    canvas = np.zeros((height, width), dtype=np.uint8)
    draw_nuclei(
        rng,
        canvas,
        sample_positions(rng, cellularity, n_tumour),
        radii,
        rng.uniform(1.0, style.max_elongation, n_tumour),
        np.clip(100 * style.hematoxylin * rng.uniform(0.85, 1.15, n_tumour), 1, 255),
    )
    n_fibroblast = int(rng.poisson(600.0 * float(mask.sum()) * mm2_per_px))
    draw_nuclei(
        rng,
        canvas,
        sample_positions(rng, mask.astype(np.float32), n_fibroblast),
        np.full(n_fibroblast, 2.2 / mpp),
        rng.uniform(3.0, 5.0, n_fibroblast),
        np.full(n_fibroblast, 75),
    )
    hematoxylin = canvas.astype(np.float32) / 100.0
    grain = cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 0.4 / mpp)
    grain /= max(float(grain.std()), 1e-6)
    hematoxylin *= np.clip(1.0 + style.chromatin_contrast * grain, 0.3, None)
    return cv2.GaussianBlur(hematoxylin, (0, 0), 0.25 / mpp)


def render_tissue(width: int, height: int, latent_risk: float, rng: np.random.Generator, *, mpp: float) -> np.ndarray:
    """Render an H&E-like RGB image [height, width, 3] uint8 at `mpp` µm/px for a patient of risk z.

    Tissue blobs on white glass; pink fibrous stroma (eosin) with a faint hematoxylin tint; tumour nuclei
    whose density, size, darkness, elongation and chromatin texture increase with z; colours by
    Beer-Lambert mixing of hematoxylin and eosin optical densities.
    """
    mask = tissue_mask(rng, height, width)
    eosin = stroma_eosin(rng, mask, mpp)
    hematoxylin = nuclei_hematoxylin(rng, mask, latent_risk, mpp) + 0.08 * eosin
    stain_jitter = rng.uniform(0.92, 1.08, 2).astype(np.float32)
    optical_density = (
        BACKGROUND_OD
        + hematoxylin[..., None] * (stain_jitter[0] * HEMATOXYLIN_OD)
        + eosin[..., None] * (stain_jitter[1] * EOSIN_OD)
    )
    rgb = 255.0 * np.exp(-optical_density)
    rgb += rng.normal(0.0, 1.5, (height, width, 1)).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render_slide(
    width: int,
    height: int,
    latent_risk: float,
    rng: np.random.Generator,
    *,
    level0_mpp: float = 0.25,
    render_mpp: float = 0.5,
) -> np.ndarray:
    """Level-0 RGB image [height, width, 3] uint8 at `level0_mpp` µm/px, rendered at `render_mpp` and upsampled.

    Rendering at 0.5 µm/px (the usual patch resolution) and upsampling 2× costs a quarter of rendering
    at 0.25 µm/px; pass render_mpp=level0_mpp to render directly.
    """
    import cv2

    factor = render_mpp / level0_mpp
    small = render_tissue(
        int(np.ceil(width / factor)), int(np.ceil(height / factor)), latent_risk, rng, mpp=render_mpp
    )
    if factor == 1.0:
        return small
    upsampled = cv2.resize(small, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(upsampled[:height, :width])
