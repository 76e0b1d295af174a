"""Writers of a fold's outputs (risks.csv, curve.csv, metrics.json, checkpoint.pt), each atomic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memamba.io import atomic_output

if TYPE_CHECKING:
    import torch

    from memamba.cohort.bags import PatientBag
    from memamba.train.engine import EpochResult, Predictions


def write_risks(path: Path, bags: Sequence[PatientBag], predictions: Predictions) -> None:
    """risks.csv: case_id, risk, survival_months, censorship, time_bin, surv_1 … surv_K (one row per patient)."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "case_id": [bag.case_id for bag in bags],
            "risk": predictions.risk,
            "survival_months": [float(bag.survival_months) for bag in bags],
            "censorship": [int(bag.censorship) for bag in bags],
            "time_bin": [int(bag.time_bin) for bag in bags],
        }
    )
    for k in range(predictions.survival.shape[1]):
        table[f"surv_{k + 1}"] = predictions.survival[:, k]
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=False)


def write_curve(path: Path, history: Sequence[EpochResult]) -> None:
    """curve.csv: epoch, train_loss, train_c_index (empty where the C-index could not be computed)."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "epoch": [result.epoch for result in history],
            "train_loss": [result.train_loss for result in history],
            "train_c_index": [result.train_c_index["value"] for result in history],
        }
    )
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=False)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Pretty-printed JSON (NaN is not allowed: missing values are null)."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, allow_nan=False) + "\n")


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """torch.save of `content` (model/optimiser state and the metadata needed to rebuild the model)."""
    import torch

    with atomic_output(path) as temporary:
        torch.save(content, temporary)


def cpu_state(module: torch.nn.Module | torch.optim.Optimizer) -> dict[str, Any]:
    """A state dict with every tensor moved to the CPU, so a checkpoint loads anywhere."""
    import torch

    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
        if isinstance(value, dict):
            return {key: to_cpu(item) for key, item in value.items()}
        if isinstance(value, list):
            return [to_cpu(item) for item in value]
        return value

    return to_cpu(module.state_dict())
