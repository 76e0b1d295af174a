"""Held-out survival metrics of one fold: Harrell's C, Uno's C, integrated Brier score, mean time-dependent AUC.

Every metric is a `MetricValue` {"value": float | None, "reason": str | None}. A metric that cannot be
computed (no events, no comparable pairs, empty time grid, scikit-survival refusing the data) has value None
and a reason, and a warning is logged; it is never reported as 0.

Conventions (times in months, censorship 1 = censored, event = 1 - censorship):
- Uno's C uses the training fold's censoring distribution and truncates at tau; by default tau is the 90th
  percentile of the training fold's follow-up times (`default_tau`), so the inverse-probability-of-censoring
  weights stay away from the unstable tail of the censoring Kaplan–Meier (Uno et al. need P(C > tau) > 0).
- The integrated Brier score and mean AUC use one time grid shared by all folds when given (`times`, see
  memamba.evaluate.settings: percentiles of the whole cohort's follow-up or fixed months), else
  `evaluation_times` (the 10th … 90th percentiles of the held-out follow-up). Either way a fold keeps the grid
  times inside both its held-out and its training follow-up range (`restrict_grid`). Held-out patients
  are administratively censored at the end of that range (which leaves every score at the grid times unchanged
  and keeps the censoring weights defined).
- Survival probabilities at a time t come from the discrete-time curve as a right-continuous step function:
  S(t) = 1 inside the first bin, S(t) = S_k once t has passed bin k's right edge (`survival_at`).
- The AUC uses the scalar risk (-sum_k S_k) as marker, at the grid times from the first held-out event on
  (earlier times have no case).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np

log = logging.getLogger(__name__)

TAU_QUANTILE = 0.9
GRID_QUANTILES = tuple(np.linspace(0.1, 0.9, 9))


class MetricValue(TypedDict):
    """One metric: a value, or None and the reason it could not be computed."""

    value: float | None
    reason: str | None


def metric_ok(value: float) -> MetricValue:
    """A computed metric."""
    return {"value": float(value), "reason": None}


def metric_missing(name: str, reason: str) -> MetricValue:
    """A metric that could not be computed; logs the reason."""
    log.warning("%s not computed: %s", name, reason)
    return {"value": None, "reason": reason}


def harrell_c(months: Sequence[float], censorship: Sequence[int], risk: Sequence[float]) -> MetricValue:
    """Harrell's concordance index (higher risk = earlier event), as scikit-survival computes it."""
    from sksurv.metrics import concordance_index_censored

    months, event, risk = _as_arrays(months, censorship, risk)
    problem = _basic_problem(event, risk)
    if problem:
        return metric_missing("Harrell's C", problem)
    return _guarded(
        "Harrell's C", lambda: concordance_index_censored(event, months, risk, tied_tol=1e-8)[0]
    )


def uno_c(
    months: Sequence[float],
    censorship: Sequence[int],
    risk: Sequence[float],
    train_months: Sequence[float],
    train_censorship: Sequence[int],
    *,
    tau: float | None = None,
) -> MetricValue:
    """Uno's IPCW concordance truncated at tau (months; None = `default_tau` of the training fold)."""
    from sksurv.metrics import concordance_index_ipcw

    months, event, risk = _as_arrays(months, censorship, risk)
    tau = default_tau(train_months) if tau is None else float(tau)
    problem = _basic_problem(event[months < tau], risk)
    if problem:
        return metric_missing("Uno's C", f"{problem} before tau = {tau:.3g} months")
    train = _structured(train_months, np.asarray(train_censorship, dtype=float) == 0)
    test = _structured(months, event)
    return _guarded("Uno's C", lambda: concordance_index_ipcw(train, test, risk, tau=tau)[0])


def default_tau(train_months: Sequence[float]) -> float:
    """Uno's truncation time: the 90th percentile of the training follow-up times (months)."""
    return float(np.quantile(np.asarray(train_months, dtype=float), TAU_QUANTILE))


def evaluation_times(
    val_months: Sequence[float], train_months: Sequence[float], times: Sequence[float] | None = None
) -> np.ndarray:
    """Time grid (months) for the Brier score and AUC: `times` (or, when None, the held-out follow-up
    percentiles) restricted to the held-out and the training follow-up range."""
    val = np.asarray(val_months, dtype=float)
    if val.size == 0:
        return np.empty(0)
    grid = np.quantile(val, GRID_QUANTILES) if times is None else np.asarray(times, dtype=float)
    return restrict_grid(grid, val, train_months)


def restrict_grid(grid: Sequence[float], val_months: Sequence[float], train_months: Sequence[float]) -> np.ndarray:
    """Sorted unique grid times t (months) with max(min val, min train) <= t < min(max val, max train)."""
    val = np.asarray(val_months, dtype=float)
    train = np.asarray(train_months, dtype=float)
    if val.size == 0 or train.size == 0:
        return np.empty(0)
    start = max(val.min(), train.min())
    horizon = min(val.max(), train.max())
    grid = np.unique(np.asarray(grid, dtype=float))
    return grid[(grid >= start) & (grid < horizon)]


def survival_at(curves: np.ndarray, bin_edges: Sequence[float], times: Sequence[float]) -> np.ndarray:
    """Step-function survival: curves [n, K] (S_k per bin), bin_edges [K + 1] (months) -> [n, len(times)]."""
    curves = np.asarray(curves, dtype=float)
    edges = np.asarray(bin_edges, dtype=float)
    if edges.size != curves.shape[1] + 1:
        raise ValueError(f"expected {curves.shape[1] + 1} bin edges for {curves.shape[1]} bins, got {edges.size}")
    bins = np.searchsorted(edges[1:-1], np.asarray(times, dtype=float), side="right")
    padded = np.concatenate([np.ones((curves.shape[0], 1)), curves], axis=1)
    return padded[:, bins]


def fold_metrics(
    val_months: Sequence[float],
    val_censorship: Sequence[int],
    val_risk: Sequence[float],
    val_surv_curves: np.ndarray,
    bin_edges: Sequence[float],
    train_months: Sequence[float],
    train_censorship: Sequence[int],
    *,
    tau: float | None = None,
    times: Sequence[float] | None = None,
) -> dict[str, MetricValue]:
    """All held-out metrics of one fold, the training fold serving as the censoring reference.

    val_surv_curves: [n_val, K] discrete-time survival; bin_edges: [K + 1] months; tau: Uno's truncation
    (months, None = `default_tau`); times: shared time grid in months (None = `evaluation_times`'s default).
    Returns {"c_index", "c_index_uno", "ibs", "mean_auc"}.
    """
    return {
        "c_index": harrell_c(val_months, val_censorship, val_risk),
        "c_index_uno": uno_c(val_months, val_censorship, val_risk, train_months, train_censorship, tau=tau),
        **_time_dependent(
            val_months, val_censorship, val_risk, val_surv_curves, bin_edges, train_months, train_censorship, times
        ),
    }


def _time_dependent(
    val_months: Sequence[float],
    val_censorship: Sequence[int],
    val_risk: Sequence[float],
    val_surv_curves: np.ndarray,
    bin_edges: Sequence[float],
    train_months: Sequence[float],
    train_censorship: Sequence[int],
    grid: Sequence[float] | None,
) -> dict[str, MetricValue]:
    from sksurv.metrics import cumulative_dynamic_auc, integrated_brier_score

    months, event, risk = _as_arrays(val_months, val_censorship, val_risk)
    times = evaluation_times(months, train_months, grid)
    if times.size < 2:
        reason = f"time grid has {times.size} point(s) inside the held-out and training follow-up (need 2)"
        return {"ibs": metric_missing("IBS", reason), "mean_auc": metric_missing("mean AUC", reason)}

    horizon = min(months.max(), float(np.max(train_months)))
    capped_event = event & (months < horizon)
    test = _structured(np.minimum(months, horizon), capped_event)
    train = _structured(train_months, np.asarray(train_censorship, dtype=float) == 0)
    survival = survival_at(val_surv_curves, bin_edges, times)

    ibs = _guarded("IBS", lambda: integrated_brier_score(train, test, survival, times))
    problem = _basic_problem(capped_event, risk)
    if problem:
        return {"ibs": ibs, "mean_auc": metric_missing("mean AUC", problem)}
    auc_times = times[times >= months[capped_event].min()]  # a time needs a case (event up to t)
    if auc_times.size == 0:
        return {"ibs": ibs, "mean_auc": metric_missing("mean AUC", "no held-out event up to any grid time")}
    mean_auc = _guarded("mean AUC", lambda: cumulative_dynamic_auc(train, test, risk, auc_times)[1])
    return {"ibs": ibs, "mean_auc": mean_auc}


def _as_arrays(
    months: Sequence[float], censorship: Sequence[int], risk: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    months = np.asarray(months, dtype=float)
    event = np.asarray(censorship, dtype=float) == 0
    risk = np.asarray(risk, dtype=float)
    return months, event, risk


def _structured(months: Sequence[float], event: np.ndarray) -> np.ndarray:
    """scikit-survival's structured array (event bool, time float) from months and event flags."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=event, time=np.asarray(months, dtype=float))


def _basic_problem(event: np.ndarray, risk: np.ndarray) -> str | None:
    if risk.size < 2:
        return f"{risk.size} held-out patient(s), need at least 2"
    if not np.isfinite(risk).all():
        return f"{int((~np.isfinite(risk)).sum())} non-finite risk value(s)"
    if not event.any():
        return "no events among the held-out patients"
    return None


def _guarded(name: str, compute: Callable[[], float]) -> MetricValue:
    try:
        value = float(compute())
    except ValueError as error:
        return metric_missing(name, f"scikit-survival: {error}")
    if not np.isfinite(value):
        return metric_missing(name, f"scikit-survival returned {value}")
    return metric_ok(value)
