"""Resumable training state: written atomically after every epoch, reloaded when a rerun has the same settings.

The state holds the model and optimiser, the data-order generator, torch's global generator (dropout) and
the epoch history, so a run killed after epoch e and restarted continues with epoch e + 1 exactly as an
uninterrupted run would (bit for bit on CPU). A state written under other settings (another fingerprint) is
ignored with a warning and replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memamba.train.engine import EpochResult
from memamba.train.outputs import cpu_state, save_checkpoint

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"


def fingerprint(settings: dict[str, Any]) -> str:
    """sha256 of the JSON of everything that determines a training run (model, parameters, patients)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def save_state(
    path: Path,
    key: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: list[EpochResult],
) -> None:
    """Write the state after the last epoch of `history` (atomic: a kill never leaves half a file)."""
    import torch

    save_checkpoint(
        path,
        {
            "fingerprint": key,
            "epoch": len(history),
            "model_state": cpu_state(model),
            "optimizer_state": cpu_state(optimizer),
            "generator_state": generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": [asdict(result) for result in history],
        },
    )


def load_state(
    path: Path,
    key: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> list[EpochResult]:
    """Restore a matching state into model, optimiser and generators; returns its history ([] when none)."""
    import torch

    if not path.is_file():
        return []
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != key:
        log.warning("%s was written with other settings; training starts from epoch 1", path)
        return []
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    generator.set_state(state["generator_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if state["cuda_rng_states"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng_states"])
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return [EpochResult(**result) for result in state["history"]]
