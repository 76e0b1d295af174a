"""scikit-survival's CoxNet (elastic-net Cox model) as a genomics-only baseline in the same fold harness.

Input: every patient's scaled genomic groups concatenated, [n, sum g_i] (the fold's scaler, fitted on its
training patients). The penalty alpha is chosen by an inner, seeded, event-stratified K-fold cross-validation
on the training patients only (Harrell's C averaged over the inner folds, on one alpha path fitted on all
training patients), or fixed with `alpha`. The final model is fitted on all training patients along the
same alpha path down to the chosen alpha (warm-started: a lone small alpha can diverge). Survival curves
for the harness are the model's survival function (Breslow baseline) read at the right edge of each time
bin (the last bin at the last training time).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memamba.errors import InputError
from memamba.train.engine import Predictions
from memamba.train.params import TrainParams

if TYPE_CHECKING:
    from memamba.cohort.bags import PatientBag
    from memamba.train.loop import FoldInputs, Trained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoxNetParams:
    """l1_ratio: elastic-net mixing (1 = lasso); alpha: fixed penalty, None = inner CV over an alpha path of
    n_alphas values down to alpha_min_ratio × the largest; inner_folds: folds of that inner CV."""

    l1_ratio: float = 0.5
    alpha: float | None = None
    n_alphas: int = 30
    alpha_min_ratio: float = 0.05
    inner_folds: int = 3
    max_iter: int = 100_000

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> CoxNetParams:
        """Defaults overridden by `params`; unknown keys raise InputError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(f"unknown parameter(s) {unknown} for model 'coxnet'; valid parameters: {sorted(known)}")
        return cls(**params)


def genomics_matrix(bags: Sequence[PatientBag]) -> np.ndarray:
    """Scaled genomic groups of each bag, concatenated: float64 [n, sum g_i]."""
    return np.stack([np.concatenate([group.numpy() for group in bag.genomics]) for bag in bags]).astype(np.float64)


def survival_target(bags: Sequence[PatientBag]) -> np.ndarray:
    """scikit-survival's structured array (event, time in months) of the bags."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=[bag.censorship == 0 for bag in bags], time=[bag.survival_months for bag in bags])


def choose_alpha(x: np.ndarray, y: np.ndarray, params: CoxNetParams, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The alpha path (descending) down to the alpha with the best mean inner-CV Harrell's C on the training
    patients, and the CV table. An inner fold whose path fit fails numerically counts as C = 0.5 (logged)."""
    from sklearn.model_selection import StratifiedKFold
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    path = CoxnetSurvivalAnalysis(
        l1_ratio=params.l1_ratio,
        n_alphas=params.n_alphas,
        alpha_min_ratio=params.alpha_min_ratio,
        max_iter=params.max_iter,
    )
    alphas = _fit(path, x, y).alphas_
    scores = np.full((params.inner_folds, len(alphas)), np.nan)
    splitter = StratifiedKFold(n_splits=params.inner_folds, shuffle=True, random_state=seed)
    for row, (train, val) in enumerate(splitter.split(x, y["event"])):
        model = CoxnetSurvivalAnalysis(l1_ratio=params.l1_ratio, alphas=alphas, max_iter=params.max_iter)
        try:
            model.fit(x[train], y[train])
        except ArithmeticError as error:
            log.warning("CoxNet inner fold %d: %s; its scores count as C = 0.5", row, error)
            continue
        for column, alpha in enumerate(alphas):
            risk = model.predict(x[val], alpha=alpha)
            if y["event"][val].any() and np.ptp(risk) > 0:
                scores[row, column] = concordance_index_censored(y["event"][val], y["time"][val], risk)[0]
    mean = np.where(np.isnan(scores), 0.5, scores).mean(axis=0)
    best = int(np.argmax(mean))
    return alphas[: best + 1], {"alphas": alphas.tolist(), "inner_cv_c_index": mean.tolist()}


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """model.fit(x, y); scikit-survival's numerical failure becomes an InputError naming the fix."""
    try:
        return model.fit(x, y)
    except ArithmeticError as error:
        raise InputError(
            f"CoxNet: {error} (the smallest alpha is too small for these data); raise the model parameter "
            "alpha_min_ratio, or alpha"
        ) from None


def train_coxnet(fold_data: FoldInputs, model_params: Mapping[str, Any], params: TrainParams) -> Trained:
    """Fit CoxNet on the fold's training patients and predict its held-out patients (loop.Trained)."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from memamba.train.loop import Trained

    settings = CoxNetParams.from_dict(model_params)
    x, y = genomics_matrix(fold_data.train), survival_target(fold_data.train)
    selection: dict[str, Any] = {}
    path = np.asarray([settings.alpha], dtype=float)
    if settings.alpha is None:
        path, selection = choose_alpha(x, y, settings, params.seed)
    alpha = float(path[-1])
    final = CoxnetSurvivalAnalysis(
        l1_ratio=settings.l1_ratio, alphas=path, max_iter=settings.max_iter, fit_baseline_model=True
    )
    model = _fit(final, x, y)
    n_selected = int(np.count_nonzero(model.coef_[:, -1]))
    log.info("CoxNet: alpha %.4g, %d of %d genomic features kept", alpha, n_selected, x.shape[1])
    predictions = coxnet_predictions(model, genomics_matrix(fold_data.val), fold_data.time_bin_edges, alpha)
    return Trained(
        predictions=predictions,
        history=[],
        epochs=None,
        state={"model_type": "coxnet", "estimator": model, "alpha": alpha},
        extra_record={
            "coxnet": {"alpha": alpha, "n_features_kept": n_selected, "n_features": int(x.shape[1]), **selection}
        },
    )


def coxnet_predictions(model: Any, x: np.ndarray, bin_edges: Sequence[float], alpha: float) -> Predictions:
    """Risk (linear predictor) [n] and survival at each bin's right edge [n, K] of a fitted CoxNet at `alpha`."""
    if x.shape[0] == 0:
        return Predictions(risk=np.empty(0), survival=np.empty((0, len(bin_edges) - 1)))
    functions = model.predict_survival_function(x, alpha=alpha)
    last_time = float(functions[0].domain[1])
    times = np.minimum(np.asarray(bin_edges, dtype=float)[1:], last_time)
    survival = np.stack([function(times) for function in functions])
    return Predictions(risk=np.asarray(model.predict(x, alpha=alpha), dtype=float), survival=survival)
