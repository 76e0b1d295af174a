"""Read a patient's patch features from per-slide feature files (`{features_dir}/{slide_key}.h5`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from memamba.errors import InputError

log = logging.getLogger(__name__)


def read_slide_features(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(features float32 [N, D], coords int64 [N, 2]) of one slide's feature file.

    Returns None, with a warning, when the file is missing, its `status` attribute is not "ok" (a file
    without the attribute, as CLAM writes them, counts as "ok") or it holds no patch.
    """
    import h5py

    if not path.is_file():
        log.warning("%s: feature file missing; slide skipped", path)
        return None
    with h5py.File(path, "r") as handle:
        status = handle.attrs.get("status", "ok")
        status = status.decode() if isinstance(status, bytes) else str(status)
        if status != "ok":
            log.warning("%s: status %r; slide skipped", path, status)
            return None
        if "features" not in handle or "coords" not in handle:
            raise InputError(f"{path}: needs datasets 'features' [N, D] and 'coords' [N, 2]; "
                             "re-run memamba features for this slide")
        features = handle["features"][()].astype(np.float32)
        coords = handle["coords"][()].astype(np.int64)
    if features.ndim != 2 or coords.shape != (features.shape[0], 2):
        raise InputError(f"{path}: features {features.shape} and coords {coords.shape} are not [N, D] and "
                         "[N, 2]; re-run memamba features for this slide")
    if features.shape[0] == 0:
        log.warning("%s: no patch; slide skipped", path)
        return None
    return features, coords


def patient_features(
    features_dir: Path, slide_keys: list[str], feature_dim: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Concatenate the usable slides of one patient, in slide order: float32 [N, D], int64 [N, 2].

    The coords of the slides are stacked on one canvas (see `stack_slide_coords`).

    None when no slide is usable. feature_dim: the D every file must have (InputError naming the file
    otherwise); None accepts the first file's D.
    """
    parts = []
    for key in slide_keys:
        path = features_dir / f"{key}.h5"
        slide = read_slide_features(path)
        if slide is None:
            continue
        dim = slide[0].shape[1]
        if feature_dim is not None and dim != feature_dim:
            raise InputError(f"{path}: features have D = {dim}, other slides {feature_dim}; extract every "
                             "slide of a cohort with the same encoder")
        feature_dim = dim
        parts.append(slide)
    if not parts:
        return None
    return np.concatenate([p[0] for p in parts]), stack_slide_coords([p[1] for p in parts])


def stack_slide_coords(slide_coords: list[np.ndarray]) -> np.ndarray:
    """One patient canvas int64 [N, 2] from per-slide level-0 coords: each slide below the previous ones.

    Slide k is shifted down so its top row lies below the bottom row of slides 0…k-1; x is unchanged.
    A spatial scan (row-major or Hilbert) then visits the slides one after the other instead of mixing
    patches of different slides whose level-0 coordinates overlap.
    """
    stacked = []
    bottom = None
    for coords in slide_coords:
        shifted = coords.copy()
        if bottom is not None:
            shifted[:, 1] += bottom + 1 - coords[:, 1].min()
        bottom = shifted[:, 1].max()
        stacked.append(shifted)
    return np.concatenate(stacked)
