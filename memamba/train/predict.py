"""Apply a trained fold ensemble (runs/{cohort}/{model}/fold_*/checkpoint.pt) to new patients.

Each fold prepares the new patients exactly as its own training patients were prepared: the genomic
scaler, group columns and time bins stored in its checkpoint (nothing is refitted on the new patients).
Per patient and fold: a risk, a survival curve and a percentile of that risk among the fold's held-out
(out-of-fold) risks. The ensemble averages them over folds: survival S(t) at common times (each fold's
discrete curve read as a step function over its own bins), risk, and percentile; the percentile is on the
scale of the within-fold rank-normalised out-of-fold risks, so the risk-group cut-offs stored by
`memamba evaluate` (summary.json) apply to it directly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memamba.errors import InputError
from memamba.evaluate.metrics import survival_at
from memamba.evaluate.pooled import assign_risk_groups
from memamba.io import atomic_output

if TYPE_CHECKING:
    import pandas as pd

    from memamba.cohort.bags import PatientBag
    from memamba.cohort.store import Cohort
    from memamba.train.engine import Predictions

log = logging.getLogger(__name__)


def predict_patients(
    run_dir: str | os.PathLike[str],
    cohort_dir: str | os.PathLike[str],
    features_dir: str | os.PathLike[str] | None,
    out_csv: str | os.PathLike[str],
    *,
    times: list[float] | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Write out_csv: case_id, n_folds, risk, risk_percentile, risk_group_{scheme}…, surv_{t}m… (+ labels).

    run_dir: runs/{cohort}/{model} with fold_*/checkpoint.pt, fold_*/risks.csv and summary.json (from
    `memamba evaluate`); cohort_dir: new patients as `memamba genomics` writes them; features_dir: their
    per-slide features (None for genomics-only models); times: months of the survival columns (default:
    the folds' mean finite bin edges). Patients without usable slide features are skipped with a warning.
    """
    import pandas as pd

    from memamba.cohort.store import read_cohort

    run_dir = Path(run_dir)
    folds = sorted(run_dir.glob("fold_*/checkpoint.pt"), key=lambda path: int(path.parent.name.split("_")[1]))
    if not folds:
        raise InputError(f"{run_dir}: no fold_*/checkpoint.pt; train the model (memamba train) first")
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"{summary_path}: not found; run `memamba evaluate` on {run_dir} first")
    summary = json.loads(summary_path.read_text())
    cohort = read_cohort(cohort_dir)
    checkpoints = [_load(path) for path in folds]
    if times is None:
        times = np.mean([np.asarray(c["time_bin_edges"][1:-1], dtype=float) for c in checkpoints], axis=0).tolist()

    case_ids: list[str] | None = None
    risks, percentiles, curves = [], [], []
    for path, checkpoint in zip(folds, checkpoints, strict=True):
        bags = _bags(cohort, checkpoint, None if features_dir is None else Path(features_dir), path)
        if case_ids is None:
            case_ids = [bag.case_id for bag in bags]
        predictions = _predict_fold(checkpoint, bags, device)
        reference = pd.read_csv(path.parent / "risks.csv")["risk"].to_numpy(dtype=float)
        risks.append(predictions.risk)
        percentiles.append(_percentile(predictions.risk, reference))
        curves.append(survival_at(predictions.survival, checkpoint["time_bin_edges"], times))
    if not case_ids:
        raise InputError(f"{cohort_dir}: no patient could be predicted (no usable slide features)")

    table = pd.DataFrame(
        {
            "case_id": case_ids,
            "n_folds": len(folds),
            "risk": np.mean(risks, axis=0),
            "risk_percentile": np.mean(percentiles, axis=0),
        }
    )
    for scheme, groups in summary.get("risk_groups", {}).items():
        table[f"risk_group_{scheme}"] = assign_risk_groups(
            table["risk_percentile"].to_numpy(), groups["cutoffs_normalised"], scheme
        )
    survival = np.mean(curves, axis=0)
    for column, time in enumerate(times):
        table[f"surv_{time:.3g}m"] = survival[:, column]
    labels = cohort.patients.set_index("case_id")
    for label in ("survival_months", "censorship"):
        if label in labels.columns:
            table[label] = labels.loc[case_ids, label].to_numpy()
    with atomic_output(out_csv) as temporary:
        table.to_csv(temporary, index=False)
    log.info("predicted %d patients with %d folds of %s", len(table), len(folds), run_dir)
    return table


def _load(path: Path) -> dict[str, Any]:
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    missing = {"scaler", "omic_columns", "group_columns", "time_bin_edges"} - set(checkpoint)
    if missing:
        raise InputError(f"{path}: checkpoint lacks {sorted(missing)} (written by an older memamba); retrain this fold")
    return checkpoint


def _bags(cohort: Cohort, checkpoint: dict[str, Any], features_dir: Path | None, path: Path) -> list[PatientBag]:
    """New patients as bags, with the fold's scaler and group columns (features only when the model uses them)."""
    import torch

    from memamba.cohort.bags import PatientBag
    from memamba.cohort.preprocess import Scaler
    from memamba.cohort.slide_features import patient_features

    if checkpoint.get("modalities") != "genomics" and features_dir is None:
        raise InputError(f"{path}: the model uses slide features; give the new patients' features folder")
    columns = checkpoint["omic_columns"]
    absent = [column for column in columns if column not in cohort.omics.columns]
    if absent:
        raise InputError(
            f"new patients' omics lack {len(absent)} column(s) the model of {path} was trained on "
            f"(first: {absent[:3]}); build their cohort from a table with the same gene columns"
        )
    scaler = Scaler(
        **{key: np.asarray(value) if key != "kind" else value for key, value in checkpoint["scaler"].items()}
    )
    scaled = scaler.transform(cohort.omics[columns].to_numpy(dtype=float)).astype(np.float32)
    positions = {column: index for index, column in enumerate(columns)}
    group_index = [np.array([positions[c] for c in group]) for group in checkpoint["group_columns"].values()]
    uses_slides = features_dir is not None and checkpoint.get("modalities") != "genomics"
    bags = []
    for row, case in enumerate(cohort.patients["case_id"]):
        features, coords = np.zeros((0, 0), dtype=np.float32), np.zeros((0, 2), dtype=np.int64)
        if uses_slides:
            slides = patient_features(
                features_dir, str(cohort.patients["slide_ids"].iloc[row]).split(";"), checkpoint["feature_dim"]
            )
            if slides is None:
                log.warning("patient %s: no usable slide features in %s; not predicted", case, features_dir)
                continue
            features, coords = slides
        bags.append(
            PatientBag(
                case_id=str(case),
                features=torch.from_numpy(features),
                coords=torch.from_numpy(coords),
                genomics=[torch.from_numpy(scaled[row, index].copy()) for index in group_index],
                time_bin=0,
                survival_months=0.0,
                censorship=1,
            )
        )
    return bags


def _predict_fold(checkpoint: dict[str, Any], bags: list[PatientBag], device: str) -> Predictions:
    import torch

    from memamba.train.engine import predict

    if checkpoint.get("model_type") == "coxnet":
        from memamba.train.coxnet import coxnet_predictions, genomics_matrix

        return coxnet_predictions(
            checkpoint["estimator"], genomics_matrix(bags), checkpoint["time_bin_edges"], checkpoint["alpha"]
        )
    from memamba.models.registry import build_model

    model = build_model(
        checkpoint["model_name"],
        feature_dim=checkpoint["feature_dim"],
        group_sizes=checkpoint["group_sizes"],
        n_bins=checkpoint["n_bins"],
        **checkpoint["model_params"],
    )
    model.load_state_dict(checkpoint["model_state"])
    return predict(model.to(device), bags, device=torch.device(device))


def _percentile(risk: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-rank position (0, 1) of each risk among a fold's out-of-fold risks (ties count half)."""
    below = np.searchsorted(np.sort(reference), risk, side="left")
    not_above = np.searchsorted(np.sort(reference), risk, side="right")
    return (below + not_above) / (2.0 * len(reference))
