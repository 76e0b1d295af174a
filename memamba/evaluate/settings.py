"""Evaluation settings of a run: Uno's truncation time and the time grid shared by all folds.

The shared grid is fixed before any fold is trained, from the follow-up times (months) of the whole cohort
(percentiles, `time_grid_quantiles`) or given in months (`time_grid`). It uses labels only, fits nothing
and is the same for every fold and model, so the integrated Brier scores and AUCs of the folds are
averages over the same times; each fold keeps the grid times inside its own follow-up range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memamba.errors import InputError

DEFAULT_GRID_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class EvaluationSettings:
    """uno_tau: Uno's truncation in months (None = 90th percentile of each training fold's follow-up).
    time_grid: fixed grid in months for IBS/AUC (None = `time_grid_quantiles` of the cohort's follow-up).
    """

    uno_tau: float | None = None
    time_grid: tuple[float, ...] | None = None
    time_grid_quantiles: tuple[float, ...] = DEFAULT_GRID_QUANTILES

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> EvaluationSettings:
        """Defaults overridden by `settings`; unknown keys or bad values raise InputError."""
        known = {"uno_tau", "time_grid", "time_grid_quantiles"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InputError(f"evaluation settings: unknown key(s) {unknown}; known keys are {sorted(known)}")
        tau = settings.get("uno_tau")
        if tau is not None and not (_is_number(tau) and tau > 0):
            raise InputError(f"evaluation settings: uno_tau={tau!r} must be null or a number of months > 0")
        grid = settings.get("time_grid")
        if grid is not None and not (_numbers(grid) and len(grid) >= 2 and min(grid) > 0):
            raise InputError(f"evaluation settings: time_grid={grid!r} must be null or >= 2 months > 0")
        quantiles = settings.get("time_grid_quantiles", DEFAULT_GRID_QUANTILES)
        if not (_numbers(quantiles) and len(quantiles) >= 2 and all(0 < q < 1 for q in quantiles)):
            raise InputError(f"evaluation settings: time_grid_quantiles={quantiles!r} must be >= 2 numbers in (0, 1)")
        return cls(
            uno_tau=None if tau is None else float(tau),
            time_grid=None if grid is None else tuple(float(t) for t in grid),
            time_grid_quantiles=tuple(float(q) for q in quantiles),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-ready)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def shared_grid(self, cohort_months: Sequence[float]) -> np.ndarray:
        """The grid in months: `time_grid`, else the quantiles of every patient's follow-up (cohort_months)."""
        if self.time_grid is not None:
            return np.asarray(sorted(self.time_grid), dtype=float)
        return np.unique(np.quantile(np.asarray(cohort_months, dtype=float), self.time_grid_quantiles))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values: Any) -> bool:
    return isinstance(values, (list, tuple)) and all(_is_number(value) for value in values)
