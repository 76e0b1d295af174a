"""Train one model on one cross-validation fold and write its held-out risks, metrics, curve and checkpoint.

The schedule is fixed (`epochs`, or a count chosen by early stopping on an inner split of the training
patients); the held-out patients are predicted once, after the final epoch, and are never used to choose an
epoch. A killed run restarts from its last finished epoch (`resume.pt`, removed once the fold is done).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from memamba import __version__
from memamba.errors import InputError
from memamba.evaluate.metrics import default_tau, evaluation_times, fold_metrics
from memamba.evaluate.settings import EvaluationSettings
from memamba.train.engine import EpochResult, predict
from memamba.train.outputs import cpu_state, save_checkpoint, write_curve, write_json, write_risks
from memamba.train.params import TrainParams
from memamba.train.resume import RESUME_FILE, fingerprint
from memamba.train.schedule import fit, select_epochs

if TYPE_CHECKING:
    import numpy as np
    import torch

    from memamba.cohort.bags import PatientBag
    from memamba.train.engine import Predictions

log = logging.getLogger(__name__)


class FoldInputs(Protocol):
    """What training needs from a fold (memamba.cohort's FoldData satisfies it)."""

    train: list[PatientBag]
    val: list[PatientBag]
    time_bin_edges: Any
    group_names: list[str]
    group_sizes: list[int]
    feature_dim: int
    dropped: list[str]


@dataclass
class Trained:
    """What a model type leaves after training on a fold: held-out predictions, history, checkpoint content."""

    predictions: Predictions
    history: list[EpochResult]
    state: dict[str, Any]
    epochs: int | None
    extra_record: dict[str, Any] = field(default_factory=dict)


def train_fold(
    cohort_dir: str | os.PathLike[str],
    features_dir: str | os.PathLike[str] | None,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    train_params: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    evaluation: Mapping[str, Any] | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Load fold `fold` of a cohort, train `model_name` on its training patients, evaluate the held-out ones.

    Writes out_dir/{risks.csv, metrics.json, checkpoint.pt, curve.csv}; returns the metrics.json content.
    train_params: see TrainParams (unknown keys raise InputError); model_params go to build_model (or to the
    CoxNet adapter for model "coxnet"); evaluation: see EvaluationSettings (the shared time grid comes from
    every patient's follow-up in the cohort). The checkpoint holds the fold's time bins, genomic scaler and
    group columns, so `memamba predict` can prepare new patients exactly as this fold's training patients.
    """
    import pandas as pd

    from memamba.cohort.folds import load_fold
    from memamba.cohort.store import read_cohort

    params = TrainParams.from_dict(train_params)
    settings = EvaluationSettings.from_dict(evaluation or {})
    fold_data = load_fold(cohort_dir, features_dir, fold, n_bins=params.n_bins)
    cohort = read_cohort(cohort_dir)
    grid = settings.shared_grid(pd.to_numeric(cohort.patients["survival_months"]).to_numpy())
    scaler = fold_data.scaler
    preparation = {
        "scaler": {
            "kind": scaler.kind,
            "fill": scaler.fill.tolist(),
            "center": scaler.center.tolist(),
            "scale": scaler.scale.tolist(),
        },
        "omic_columns": list(cohort.omics.columns),
        "group_columns": {name: list(columns) for name, columns in cohort.groups.items()},
        "modalities": "genomics" if features_dir is None else "pathology+genomics",
    }
    common = {
        "fold": fold,
        "model_name": model_name,
        "model_params": model_params,
        "params": params,
        "out_dir": out_dir,
        "device": device,
        "settings": settings,
        "grid": grid,
        "resume": resume,
        "checkpoint_extra": preparation,
    }
    if model_name == "coxnet":
        from memamba.train.coxnet import train_coxnet

        return run_fold(fold_data, None, trainer=lambda: train_coxnet(fold_data, model_params, params), **common)

    from memamba.models.registry import build_model

    def make_model() -> torch.nn.Module:
        return build_model(
            model_name,
            feature_dim=fold_data.feature_dim,
            group_sizes=list(fold_data.group_sizes),
            n_bins=params.n_bins,
            **model_params,
        )

    return run_fold(fold_data, make_model, **common)


def run_fold(
    fold_data: FoldInputs,
    make_model: Callable[[], torch.nn.Module] | None,
    *,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    params: TrainParams,
    out_dir: str | os.PathLike[str],
    device: str = "cpu",
    settings: EvaluationSettings | None = None,
    grid: np.ndarray | None = None,
    resume: bool = True,
    checkpoint_extra: Mapping[str, Any] | None = None,
    trainer: Callable[[], Trained] | None = None,
) -> dict[str, Any]:
    """Train a model from `make_model()` (called after seeding) on fold_data.train, evaluate fold_data.val.

    trainer: replaces the torch training (a non-torch model type such as CoxNet). grid: shared time grid in
    months (None = the held-out follow-up percentiles). Same outputs and return value as `train_fold`.
    """
    out_dir = Path(out_dir)
    settings = settings or EvaluationSettings()
    if not fold_data.train:
        raise InputError(f"fold {fold}: no training patients; check the cohort's splits_{fold}.csv")
    if trainer is None:
        trained = _train_torch(
            fold_data,
            make_model,
            fold=fold,
            model_name=model_name,
            model_params=model_params,
            params=params,
            out_dir=out_dir,
            device=device,
            resume=resume,
        )
    else:
        trained = trainer()

    record = _fold_record(fold_data, trained, fold, model_name, model_params, params, device, settings, grid)
    write_risks(out_dir / "risks.csv", fold_data.val, trained.predictions)
    write_curve(out_dir / "curve.csv", trained.history)
    save_checkpoint(
        out_dir / "checkpoint.pt",
        {
            **trained.state,
            "epoch": trained.epochs,
            "fold": fold,
            "model_name": model_name,
            "model_params": dict(model_params),
            "train_params": params.to_dict(),
            "n_bins": len(fold_data.time_bin_edges) - 1,
            "time_bin_edges": [float(edge) for edge in fold_data.time_bin_edges],
            "group_names": list(fold_data.group_names),
            "group_sizes": [int(size) for size in fold_data.group_sizes],
            "feature_dim": int(fold_data.feature_dim),
            "memamba_version": __version__,
            **dict(checkpoint_extra or {}),
        },
    )
    write_json(out_dir / "metrics.json", record)
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
    log.info("fold %d: held-out C-index %s (%d patients)", fold, record["metrics"]["c_index"]["value"], record["n_val"])
    return record


def _train_torch(
    fold_data: FoldInputs,
    make_model: Callable[[], torch.nn.Module],
    *,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    params: TrainParams,
    out_dir: Path,
    device: str,
    resume: bool,
) -> Trained:
    """Epoch selection (when early stopping is on), resumable training, then held-out predictions."""
    torch_device = _device(device)
    description = f"fold {fold} {model_name}"
    extra: dict[str, Any] = {}
    epochs = params.epochs
    if params.early_stopping:
        selection = select_epochs(fold_data.train, make_model, params, device=torch_device, description=description)
        epochs = selection["selected_epochs"]
        extra["early_stopping"] = {
            **selection,
            "inner_val_loss": [_finite_or_none(value) for value in selection["inner_val_loss"]],
        }
    key = fingerprint(
        {
            "fold": fold,
            "model": model_name,
            "model_params": dict(model_params),
            "train_params": params.to_dict(),
            "epochs": epochs,
            "device_type": torch_device.type,
            "train": [bag.case_id for bag in fold_data.train],
        }
    )
    fitted = fit(
        fold_data.train,
        make_model,
        params,
        epochs,
        device=torch_device,
        description=description,
        resume_path=out_dir / RESUME_FILE if resume else None,
        resume_key=key,
    )
    predictions = predict(fitted.model, fold_data.val, device=torch_device)
    state = {
        "model_type": "torch",
        "model_state": cpu_state(fitted.model),
        "optimizer_state": cpu_state(fitted.optimizer),
    }
    return Trained(predictions=predictions, history=fitted.history, state=state, epochs=epochs, extra_record=extra)


def _fold_record(
    fold_data: FoldInputs,
    trained: Trained,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    params: TrainParams,
    device: str,
    settings: EvaluationSettings,
    grid: np.ndarray | None,
) -> dict[str, Any]:
    """The metrics.json content: held-out metrics at the final epoch and everything needed to read them."""
    import numpy as np

    train_months = [bag.survival_months for bag in fold_data.train]
    train_censorship = [bag.censorship for bag in fold_data.train]
    val_months = [bag.survival_months for bag in fold_data.val]
    val_censorship = [bag.censorship for bag in fold_data.val]
    edges = [float(edge) for edge in np.asarray(fold_data.time_bin_edges, dtype=float)]
    predictions = trained.predictions
    metrics = fold_metrics(
        val_months,
        val_censorship,
        predictions.risk,
        predictions.survival,
        edges,
        train_months,
        train_censorship,
        tau=settings.uno_tau,
        times=grid,
    )
    tau = settings.uno_tau if settings.uno_tau is not None else default_tau(train_months)
    return {
        "fold": fold,
        "model": model_name,
        "model_params": dict(model_params),
        "train_params": params.to_dict(),
        "epochs": trained.epochs,
        "device": device,
        "n_train": len(fold_data.train),
        "n_val": len(fold_data.val),
        "n_val_events": int(sum(1 for censored in val_censorship if not censored)),
        "dropped": [str(case_id) for case_id in fold_data.dropped],
        "time_bin_edges": [edge if np.isfinite(edge) else None for edge in edges],
        "evaluation": {
            **settings.to_dict(),
            "uno_tau_months": tau,
            "shared_time_grid_months": None if grid is None else [float(t) for t in grid],
            "time_grid_months": [float(t) for t in evaluation_times(val_months, train_months, grid)],
        },
        "metrics": metrics,
        **trained.extra_record,
        "memamba_version": __version__,
    }


def _finite_or_none(value: float) -> float | None:
    import math

    return value if math.isfinite(value) else None


def _device(name: str) -> torch.device:
    """torch.device for `name`; a CUDA device without CUDA raises InputError."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"device {name!r}: {error}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available here; use --device cpu")
    return device
