"""Train one model on one cross-validation fold and write its held-out risks, metrics, curve and checkpoint.

The schedule is fixed (`epochs`); the held-out patients are predicted once, after the final epoch, and are
never used to choose an epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from memamba import __version__
from memamba.errors import InputError
from memamba.evaluate.metrics import default_tau, evaluation_times, fold_metrics
from memamba.train.engine import make_optimizer, predict, seeded, train_epoch
from memamba.train.outputs import cpu_state, save_checkpoint, write_curve, write_json, write_risks
from memamba.train.params import TrainParams

if TYPE_CHECKING:
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
) -> dict[str, Any]:
    """Load fold `fold` of a cohort, train `model_name` on its training patients, evaluate the held-out ones.

    Writes out_dir/{risks.csv, metrics.json, checkpoint.pt, curve.csv}; returns the metrics.json content.
    train_params: see TrainParams (unknown keys raise InputError); model_params go to build_model.
    """
    from memamba.cohort.folds import load_fold
    from memamba.models.registry import build_model

    params = TrainParams.from_dict(train_params)
    fold_data = load_fold(cohort_dir, features_dir, fold, n_bins=params.n_bins)

    def make_model() -> torch.nn.Module:
        return build_model(
            model_name,
            feature_dim=fold_data.feature_dim,
            group_sizes=list(fold_data.group_sizes),
            n_bins=params.n_bins,
            **model_params,
        )

    return run_fold(
        fold_data, make_model, fold=fold, model_name=model_name, model_params=model_params,
        params=params, out_dir=out_dir, device=device,
    )


def run_fold(
    fold_data: FoldInputs,
    make_model: Callable[[], torch.nn.Module],
    *,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    params: TrainParams,
    out_dir: str | os.PathLike[str],
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a model from `make_model()` (called after seeding) on fold_data.train, evaluate fold_data.val.

    Same outputs and return value as `train_fold`.
    """
    import torch
    from tqdm import tqdm

    out_dir = Path(out_dir)
    torch_device = _device(device)
    if not fold_data.train:
        raise InputError(f"fold {fold}: no training patients; check the cohort's splits_{fold}.csv")

    with seeded(params.seed):
        model = make_model().to(torch_device)
        optimizer = make_optimizer(model, params)
        generator = torch.Generator().manual_seed(params.seed)
        history = []
        total = params.epochs * len(fold_data.train)
        with tqdm(total=total, desc=f"fold {fold} {model_name}", unit="bag") as progress:
            for epoch in range(1, params.epochs + 1):
                result = train_epoch(
                    model, fold_data.train, optimizer, params,
                    epoch=epoch, generator=generator, device=torch_device, progress=progress,
                )
                history.append(result)
                log.info("fold %d epoch %d/%d: train loss %.4f, train C %s", fold, epoch, params.epochs,
                         result.train_loss, result.train_c_index["value"])
        predictions = predict(model, fold_data.val, device=torch_device)

    record = _fold_record(fold_data, predictions, fold, model_name, model_params, params, str(torch_device))
    write_risks(out_dir / "risks.csv", fold_data.val, predictions)
    write_curve(out_dir / "curve.csv", history)
    save_checkpoint(
        out_dir / "checkpoint.pt",
        {
            "model_state": cpu_state(model),
            "optimizer_state": cpu_state(optimizer),
            "epoch": params.epochs,
            "fold": fold,
            "model_name": model_name,
            "model_params": dict(model_params),
            "train_params": params.to_dict(),
            "time_bin_edges": [float(edge) for edge in fold_data.time_bin_edges],
            "group_names": list(fold_data.group_names),
            "group_sizes": [int(size) for size in fold_data.group_sizes],
            "feature_dim": int(fold_data.feature_dim),
            "memamba_version": __version__,
        },
    )
    write_json(out_dir / "metrics.json", record)
    log.info("fold %d: held-out C-index %s (%d patients)", fold, record["metrics"]["c_index"]["value"],
             record["n_val"])
    return record


def _fold_record(
    fold_data: FoldInputs,
    predictions: Predictions,
    fold: int,
    model_name: str,
    model_params: Mapping[str, Any],
    params: TrainParams,
    device: str,
) -> dict[str, Any]:
    """The metrics.json content: held-out metrics at the final epoch and everything needed to read them."""
    import numpy as np

    train_months = [bag.survival_months for bag in fold_data.train]
    train_censorship = [bag.censorship for bag in fold_data.train]
    val_months = [bag.survival_months for bag in fold_data.val]
    val_censorship = [bag.censorship for bag in fold_data.val]
    edges = [float(edge) for edge in np.asarray(fold_data.time_bin_edges, dtype=float)]
    metrics = fold_metrics(
        val_months, val_censorship, predictions.risk, predictions.survival, edges,
        train_months, train_censorship,
    )
    return {
        "fold": fold,
        "model": model_name,
        "model_params": dict(model_params),
        "train_params": params.to_dict(),
        "epochs": params.epochs,
        "device": device,
        "n_train": len(fold_data.train),
        "n_val": len(fold_data.val),
        "n_val_events": int(sum(1 for censored in val_censorship if not censored)),
        "dropped": [str(case_id) for case_id in fold_data.dropped],
        "time_bin_edges": [edge if np.isfinite(edge) else None for edge in edges],
        "evaluation": {
            "uno_tau_months": default_tau(train_months) if train_months else None,
            "time_grid_months": [float(t) for t in evaluation_times(val_months, train_months)],
        },
        "metrics": metrics,
        "memamba_version": __version__,
    }


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
