"""Out-of-fold analyses: within-fold rank-normalised risks, pooled C-index with bootstrap CI, risk groups.

Risks of different folds come from different models and are not on one scale. Before pooling, every fold's
risks are replaced by their mid-ranks scaled to (0, 1) within that fold ((rank - 0.5) / n, ties averaged);
the pooled C-index and the risk groups (median or tertile splits) both use these normalised risks. The
cut-offs of each split are kept, on that normalised scale, so new patients can be grouped the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from memamba.evaluate.metrics import harrell_c

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def rank_normalise(risks: pd.DataFrame) -> np.ndarray:
    """Within-fold mid-ranks scaled to (0, 1); risks needs columns `fold` and `risk`. Returns [n]."""
    from scipy.stats import rankdata

    normalised = np.empty(len(risks))
    for _, rows in risks.groupby("fold").indices.items():
        fold_risk = risks["risk"].to_numpy(dtype=float)[rows]
        normalised[rows] = (rankdata(fold_risk) - 0.5) / len(rows)
    return normalised


def pooled_c_index(
    months: np.ndarray, censorship: np.ndarray, risk: np.ndarray, *, bootstrap: int, seed: int
) -> dict[str, Any]:
    """Harrell's C over all out-of-fold patients, with a percentile bootstrap 95% CI (patients resampled).

    Resamples in which the C-index cannot be computed (no events or no comparable pair) are skipped and counted.
    """
    from sksurv.metrics import concordance_index_censored

    point = harrell_c(months, censorship, risk)
    result: dict[str, Any] = {**point, "ci_low": None, "ci_high": None, "bootstrap": bootstrap, "seed": seed,
                              "n_resamples_used": 0, "n_patients": len(risk)}
    if point["value"] is None or bootstrap == 0:
        return result
    event = np.asarray(censorship) == 0
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(bootstrap):
        sample = rng.integers(0, len(risk), len(risk))
        try:
            values.append(concordance_index_censored(event[sample], months[sample], risk[sample])[0])
        except ValueError:  # a resample without events or comparable pairs: counted as skipped
            continue
    result["n_resamples_used"] = len(values)
    if values:
        result["ci_low"], result["ci_high"] = (float(q) for q in np.percentile(values, [2.5, 97.5]))
    if len(values) < bootstrap:
        log.warning("pooled C bootstrap: %d of %d resamples had no comparable pairs and were skipped",
                    bootstrap - len(values), bootstrap)
    return result


RISK_GROUP_SCHEMES = {"median": ("low", "high"), "tertiles": ("low", "intermediate", "high")}


def risk_group_cutoffs(normalised_risk: np.ndarray, scheme: str) -> list[float]:
    """Cut-offs (normalised scale) of a scheme: the median, or the 1/3 and 2/3 quantiles."""
    n_groups = len(RISK_GROUP_SCHEMES[scheme])
    return [float(q) for q in np.quantile(normalised_risk, np.arange(1, n_groups) / n_groups)]


def assign_risk_groups(normalised_risk: np.ndarray, cutoffs: list[float], scheme: str) -> np.ndarray:
    """Group labels [n]: a risk above the i-th cut-off (and not above the next) is in group i + 1."""
    names = np.asarray(RISK_GROUP_SCHEMES[scheme])
    return names[np.searchsorted(np.asarray(cutoffs, dtype=float), np.asarray(normalised_risk), side="left")]


def log_rank(months: np.ndarray, censorship: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Log-rank test between the groups: {"chisq", "p_value", "reason"} (None and a reason when impossible)."""
    from sksurv.compare import compare_survival
    from sksurv.util import Surv

    event = np.asarray(censorship) == 0
    if len(np.unique(groups)) < 2:
        reason = "fewer than two risk groups"
    elif not event.any():
        reason = "no events among the out-of-fold patients"
    else:
        try:
            chisq, p_value = compare_survival(Surv.from_arrays(event=event, time=months), groups)
            return {"chisq": float(chisq), "p_value": float(p_value), "reason": None}
        except ValueError as error:
            reason = f"scikit-survival: {error}"
    log.warning("log-rank test not computed: %s", reason)
    return {"chisq": None, "p_value": None, "reason": reason}
