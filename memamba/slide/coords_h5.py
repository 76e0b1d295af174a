"""Coords h5 files: patch corners (level-0 px) with CLAM/TRIDENT-compatible attributes on `coords`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from memamba.errors import InputError
from memamba.io import atomic_output


def write_coords(path: str | os.PathLike[str], coords: np.ndarray, attrs: Mapping[str, Any]) -> None:
    """Write dataset `coords` int64 [N, 2] (level-0 x, y of top-left corners) with `attrs` on it.

    Attributes whose value is None are left out; tuples are stored as arrays. Written atomically.
    """
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        dataset = handle.create_dataset("coords", data=coords)
        for key, value in attrs.items():
            if value is not None:
                dataset.attrs[key] = np.asarray(value) if isinstance(value, tuple | list) else value


def read_coords(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a coords h5: corners int64 [N, 2] (level-0 px) and the attributes of `coords` as Python values.

    Attributes of the file and of the dataset are merged (the dataset's win), so files that keep them
    at either place (CLAM, TRIDENT, memamba) read alike. Array attributes come back as tuples, numpy
    scalars as int/float/bool/str.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such coords h5; run `memamba tile` for this slide first")
    try:
        with h5py.File(path, "r") as handle:
            if "coords" not in handle:
                raise InputError(f"{path}: no `coords` dataset; rerun `memamba tile` for this slide")
            dataset = handle["coords"]
            coords = dataset[()].astype(np.int64)
            merged = {**handle.attrs, **dataset.attrs}
            attrs = {key: _to_python(value) for key, value in merged.items()}
    except OSError as err:
        raise InputError(f"{path}: cannot read coords h5 ({err}); rerun `memamba tile` for this slide") from err
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InputError(f"{path}: `coords` has shape {coords.shape}, expected [N, 2]; rerun `memamba tile`")
    return coords, attrs


def _to_python(value: Any) -> Any:
    """h5py attribute value as a plain Python value."""
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
