"""Feature extraction: encode every patch of one slide's coords file into a features h5 file."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memamba.errors import InputError
from memamba.features.dataset import SlidePatchDataset
from memamba.features.features_h5 import write_features
from memamba.features.registry import (
    RANDOM_WEIGHTS,
    EncoderSpec,
    build_encoder,
    check_weights_choice,
    get_encoder_spec,
)
from memamba.features.weights import file_sha256
from memamba.naming import slide_key

logger = logging.getLogger(__name__)

COORDS_ATTRS = ("patch_size_level0", "patch_size", "target_mpp", "status")


@dataclass
class FeatureResult:
    """Outcome of one slide: `status` copied from the coords file, `seconds` wall time."""

    slide: str
    status: str
    n_patches: int
    feature_dim: int
    seconds: float
    blank_patches: int


@dataclass(frozen=True)
class PatchGrid:
    """A coords file: level-0 top-left `coords` [N, 2] of patches of `patch_size_level0` level-0 px,
    which are `patch_size` px at `target_mpp` µm/px; `status` is "ok" or why the grid is empty."""

    coords: np.ndarray
    patch_size_level0: int
    patch_size: int
    target_mpp: float
    status: str


def read_patch_grid(path: Path) -> PatchGrid:
    """Read a coords h5 (dataset `coords` int64 [N, 2] and its attributes) written by `memamba tile`.

    The patch side at `target_mpp` is `target_patch_size` where present (`memamba tile` keeps
    `patch_size` for CLAM's meaning, px at `patch_level`), else `patch_size` (TRIDENT's meaning).
    """
    from memamba.slide.coords_h5 import read_coords

    coords, attrs = read_coords(path)
    missing = [name for name in COORDS_ATTRS if name not in attrs]
    if missing:
        raise InputError(f"{path}: coords lack attributes {', '.join(missing)}: re-run `memamba tile`")
    return PatchGrid(
        coords=coords,
        patch_size_level0=int(attrs["patch_size_level0"]),
        patch_size=int(attrs.get("target_patch_size", attrs["patch_size"])),
        target_mpp=float(attrs["target_mpp"]),
        status=str(attrs["status"]),
    )


def extract_features(
    slide_path: Path,
    coords_h5: Path,
    out_h5: Path,
    *,
    encoder: str = "resnet50_trunc",
    weights: Path | None = None,
    allow_random_weights: bool = False,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
) -> FeatureResult:
    """Encode the patches listed in `coords_h5` of `slide_path`; write features [N, D] to `out_h5`.

    A coords status other than "ok", or no patches, gives an empty [0, D] features file carrying that
    status. Patches that cannot be read even on a fresh handle are encoded as black images and counted
    in `blank_patches`. CPU runs float32; CUDA runs under autocast in the encoder's precision.
    """
    start = time.perf_counter()
    weights = None if weights is None else Path(weights)
    spec = get_encoder_spec(encoder)
    check_weights_choice(spec, weights, allow_random_weights)
    if batch_size < 1 or num_workers < 0:
        raise InputError(f"batch size {batch_size} / workers {num_workers}: use --batch-size ≥ 1, --num-workers ≥ 0")
    torch_device = _resolve_device(device)
    grid = read_patch_grid(Path(coords_h5))
    name = slide_key(Path(slide_path).name)

    if grid.status != "ok" or len(grid.coords) == 0:
        logger.warning("%s: coords status %r, %d patches: writing empty features", name, grid.status, len(grid.coords))
        digest = RANDOM_WEIGHTS if weights is None else file_sha256(weights)
        features, coords, blank = np.zeros((0, spec.output_dim), np.float32), grid.coords[:0], 0
    else:
        _check_slide_opens(Path(slide_path))
        model, digest = build_encoder(spec, weights, allow_random_weights)
        dataset = SlidePatchDataset(
            Path(slide_path), grid.coords, grid.patch_size_level0, grid.patch_size, spec.input_size
        )
        features, blank = encode_patches(model, spec, dataset, torch_device, batch_size, num_workers)
        coords = grid.coords
    seconds = time.perf_counter() - start
    write_features(
        Path(out_h5),
        features,
        coords,
        {
            "encoder": spec.name,
            "weights_sha256": digest,
            "mpp": grid.target_mpp,
            "patch_size": grid.patch_size,
            "patch_size_level0": grid.patch_size_level0,
            "status": grid.status,
            "seconds": seconds,
            "blank_patches": blank,
        },
    )
    return FeatureResult(name, grid.status, len(features), spec.output_dim, seconds, blank)


def encode_patches(
    model: torch.nn.Module,
    spec: EncoderSpec,
    dataset: SlidePatchDataset,
    device: torch.device,
    batch_size: int,
    num_workers: int,
) -> tuple[np.ndarray, int]:
    """(features float32 [N, D], number of blank patches) of every patch in `dataset`.

    Batches travel as uint8 and are normalised on `device` (x / 255 − mean) / std.
    """
    from torch.utils.data import DataLoader

    mean, std = spec.normalization()
    mean_255 = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_255 = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    features = np.empty((len(dataset), spec.output_dim), dtype=np.float32)
    row, blank = 0, 0
    start = time.perf_counter()
    model = model.to(device)
    with torch.inference_mode(), _autocast(spec, device):
        for images, blank_flags in loader:
            batch = (images.to(device, non_blocking=True).float() - mean_255) / std_255
            output = model(batch).float().cpu().numpy()
            if output.shape != (len(images), spec.output_dim):
                raise RuntimeError(f"encoder {spec.name} gave {output.shape}, expected [*, {spec.output_dim}]")
            features[row : row + len(output)] = output
            row += len(output)
            blank += int(blank_flags.sum())
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d patches with %s on %s in %.1f s (%.1f patches/s)",
        dataset.slide_path.name,
        row,
        spec.name,
        device,
        seconds,
        row / max(seconds, 1e-9),
    )
    if blank:
        logger.warning("%s: %d of %d patches could not be read and are blank", dataset.slide_path, blank, row)
    return features, blank


def _autocast(spec: EncoderSpec, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to the encoder's precision on CUDA; nothing (float32) elsewhere."""
    if device.type != "cuda" or spec.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, spec.precision))


def _resolve_device(device: str) -> torch.device:
    """`device` as a torch.device; an unknown or unavailable one raises InputError."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {device!r}: pass --device cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but no CUDA GPU is available: pass --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: pass --device cpu, cuda or cuda:N")
    return resolved


def _check_slide_opens(path: Path) -> None:
    """Raise InputError if OpenSlide cannot open `path` (the handle is closed again at once)."""
    import openslide

    if not path.is_file():
        raise InputError(f"{path}: slide file not found: check the slide path")
    try:
        openslide.OpenSlide(path).close()
    except (openslide.OpenSlideError, OSError) as error:
        raise InputError(f"{path}: OpenSlide cannot open the slide ({error}): check the slide file") from None
