"""Features h5 file: write and read one slide's patch features [N, D] with their coords and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

import memamba
from memamba.errors import InputError
from memamba.io import atomic_output

REQUIRED_ATTRS = ("encoder", "weights_sha256", "mpp", "patch_size", "status")


def write_features(
    path: Path,
    features: np.ndarray,
    coords: np.ndarray,
    attrs: Mapping[str, object],
    *,
    dtype: str = "float16",
) -> None:
    """Write `features` [N, D] (stored as `dtype`) and level-0 `coords` [N, 2] int64 to `path`.

    `attrs` must hold `encoder`, `weights_sha256`, `mpp` (µm/px), `patch_size` (px) and `status`;
    `memamba_version` is added, and any further attributes (`seconds`, …) are stored as given.
    """
    import h5py

    features = np.asarray(features)
    coords = np.asarray(coords, dtype=np.int64)
    if features.ndim != 2 or coords.shape != (len(features), 2):
        raise ValueError(f"features must be [N, D] and coords [N, 2], got {features.shape} and {coords.shape}")
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise ValueError(f"features attributes lack {', '.join(missing)}")
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("features", data=features.astype(dtype))
        handle.create_dataset("coords", data=coords)
        handle.attrs.update({"memamba_version": memamba.__version__, **attrs})


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """(features float32 [N, D], coords int64 [N, 2], attributes) of a features h5 file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: features file not found: run `memamba features` for this slide")
    try:
        with h5py.File(path, "r") as handle:
            if "features" not in handle or "coords" not in handle:
                raise InputError(f"{path}: no 'features'/'coords' datasets: re-run `memamba features` for this slide")
            features = handle["features"][()].astype(np.float32)
            coords = handle["coords"][()].astype(np.int64)
            attrs = {name: plain_value(value) for name, value in handle.attrs.items()}
    except OSError as error:
        raise InputError(f"{path}: not a readable HDF5 file ({error}): re-run `memamba features`") from None
    return features, coords, attrs


def export_pt(path_h5: Path, path_pt: Path) -> None:
    """Save the features of `path_h5` as a float32 torch tensor [N, D] in `path_pt` (MCAT's .pt layout)."""
    import torch

    features, _, _ = read_features(path_h5)
    with atomic_output(path_pt) as temporary:
        torch.save(torch.from_numpy(features), temporary)


def plain_value(value: object) -> object:
    """An h5py attribute as a plain Python value (str, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
