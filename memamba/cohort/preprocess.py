"""Per-fold preprocessing fitted on training patients only: survival-time bins and genomic scalers."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from memamba.errors import InputError

SCALER_KINDS: tuple[str, ...] = ("zscore", "robust", "none")


def fit_time_bins(months: np.ndarray, censorship: np.ndarray, n_bins: int = 4) -> np.ndarray:
    """Edges float64 [n_bins + 1] of discrete survival intervals, in months.

    The inner edges are the k/n_bins quantiles (k = 1 … n_bins-1) of the uncensored training times (the
    MCAT rule, fitted here on training patients only). The outer edges are open: edges[0] = 0 and
    edges[-1] = +inf, so any time ≥ 0, including held-out times outside the training range, falls in a
    bin. Bin i is [edges[i], edges[i+1]).
    """
    months = _times(months)
    censorship = np.asarray(censorship, dtype=np.int64).reshape(-1)
    if censorship.shape != months.shape:
        raise ValueError(f"months {months.shape} and censorship {censorship.shape} differ in length")
    if n_bins < 1:
        raise ValueError(f"n_bins must be ≥ 1, got {n_bins}")
    event_times = months[censorship == 0]
    if event_times.size == 0:
        raise ValueError("no uncensored time among the training patients: time bins need events")
    inner = np.quantile(event_times, np.arange(1, n_bins) / n_bins)
    return np.concatenate([[0.0], inner, [np.inf]]).astype(np.float64)


def assign_time_bins(months: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index int64 [n] in 0 … len(edges)-2 of each time (months ≥ 0) under `fit_time_bins` edges."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return np.searchsorted(inner, _times(months), side="right").astype(np.int64)


def _times(months: np.ndarray) -> np.ndarray:
    months = np.asarray(months, dtype=np.float64).reshape(-1)
    if not np.isfinite(months).all() or (months < 0).any():
        raise ValueError("survival times must be finite months ≥ 0")
    return months


@dataclass(frozen=True)
class Scaler:
    """Per-column scaling fitted on training rows: x → (x with NaN := fill − center) / scale.

    kind: "zscore" (mean, standard deviation), "robust" (median, interquartile range) or "none".
    fill, center, scale: float64 [p]; fill is the training median (0 for a column empty in training);
    scale is 1 where the training spread is 0, so constant columns map to 0, never NaN or inf.
    """

    kind: str
    fill: np.ndarray
    center: np.ndarray
    scale: np.ndarray

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Scale float [n, p] → float64 [n, p]; NaN cells take the training median first."""
        values = _matrix(matrix)
        if values.shape[1] != self.center.shape[0]:
            raise ValueError(f"scaler fitted on {self.center.shape[0]} columns, got {values.shape[1]}")
        values = np.where(np.isnan(values), self.fill, values)
        return (values - self.center) / self.scale


def fit_scaler(matrix: np.ndarray, kind: str = "zscore") -> Scaler:
    """Fit a `Scaler` on training rows, float [n, p] (NaN allowed: filled with the column median)."""
    if kind not in SCALER_KINDS:
        raise InputError(f"genomic scaler must be one of {list(SCALER_KINDS)}, got {kind!r}")
    values = _matrix(matrix)
    if values.shape[0] == 0:
        raise ValueError("cannot fit a scaler on zero rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled just below
        fill = np.nanmedian(values, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    values = np.where(np.isnan(values), fill, values)
    if kind == "zscore":
        center, spread = values.mean(axis=0), values.std(axis=0)
    elif kind == "robust":
        low, center, high = np.percentile(values, [25, 50, 75], axis=0)
        spread = high - low
    else:
        center, spread = np.zeros(values.shape[1]), np.ones(values.shape[1])
    constant = values.max(axis=0) == values.min(axis=0)
    scale = np.where(constant | ~(spread > 0), 1.0, spread)
    return Scaler(kind=kind, fill=fill, center=center, scale=scale)


def _matrix(matrix: np.ndarray) -> np.ndarray:
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a matrix [n, p], got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError("matrix holds infinite values")
    return values
