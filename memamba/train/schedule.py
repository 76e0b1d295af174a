"""Epoch schedules: a fixed number of epochs (resumable), or that number chosen on an inner validation split.

Early stopping never looks at the held-out fold: `select_epochs` splits the training patients into an inner
training and an inner validation part, trains on the first, and returns the epoch with the lowest
inner-validation NLL (stopping after `patience` epochs without improvement). The caller then trains on all
training patients for that fixed count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memamba.errors import InputError
from memamba.train.engine import EpochResult, make_optimizer, seeded, train_epoch, validation_loss
from memamba.train.params import TrainParams
from memamba.train.resume import load_state, save_state

if TYPE_CHECKING:
    import torch

    from memamba.cohort.bags import PatientBag

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """A trained model with its optimiser and per-epoch history."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    history: list[EpochResult]


def fit(
    bags: Sequence[PatientBag],
    make_model: Callable[[], torch.nn.Module],
    params: TrainParams,
    epochs: int,
    *,
    device: torch.device,
    description: str,
    resume_path: Path | None = None,
    resume_key: str = "",
) -> Fitted:
    """Seed, build the model, train `epochs` epochs over `bags`; with resume_path, save/restore state per epoch."""
    import torch
    from tqdm import tqdm

    with seeded(params.seed):
        model = make_model().to(device)
        optimizer = make_optimizer(model, params)
        generator = torch.Generator().manual_seed(params.seed)
        history: list[EpochResult] = []
        if resume_path is not None:
            history = load_state(resume_path, resume_key, model=model, optimizer=optimizer, generator=generator)
        with tqdm(total=epochs * len(bags), initial=len(history) * len(bags), desc=description, unit="bag") as progress:
            for epoch in range(len(history) + 1, epochs + 1):
                result = train_epoch(
                    model, bags, optimizer, params, epoch=epoch, generator=generator, device=device, progress=progress
                )
                history.append(result)
                log.info(
                    "%s epoch %d/%d: train loss %.4f, train C %s",
                    description,
                    epoch,
                    epochs,
                    result.train_loss,
                    result.train_c_index["value"],
                )
                if resume_path is not None:
                    save_state(
                        resume_path, resume_key, model=model, optimizer=optimizer, generator=generator, history=history
                    )
    return Fitted(model=model, optimizer=optimizer, history=history)


def inner_split(bags: Sequence[PatientBag], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (inner train, inner validation) of `bags`: a seeded split stratified by event/censored.

    Raises InputError when either part would have no event.
    """
    rng = np.random.default_rng(seed)
    inner_val: list[int] = []
    for censored in (0, 1):
        members = [index for index, bag in enumerate(bags) if bag.censorship == censored]
        n_val = round(fraction * len(members))
        inner_val.extend(rng.permutation(members)[:n_val].tolist())
    chosen = set(inner_val)
    inner_train = [index for index in range(len(bags)) if index not in chosen]
    for name, part in (("inner training", inner_train), ("inner validation", inner_val)):
        if not any(bags[index].censorship == 0 for index in part):
            raise InputError(
                f"early stopping: the {name} split of {len(bags)} training patients has no event; "
                "change train.inner_val_fraction or switch early_stopping off"
            )
    return inner_train, sorted(inner_val)


def select_epochs(
    bags: Sequence[PatientBag],
    make_model: Callable[[], torch.nn.Module],
    params: TrainParams,
    *,
    device: torch.device,
    description: str,
) -> dict[str, Any]:
    """Choose the epoch count on an inner split of the training bags (see module docstring).

    Returns {"selected_epochs", "inner_val_loss" (per epoch run), "n_inner_train", "n_inner_val", "patience"}.
    """
    import torch
    from tqdm import tqdm

    train_index, val_index = inner_split(bags, params.inner_val_fraction, params.seed)
    inner_train = [bags[index] for index in train_index]
    inner_val = [bags[index] for index in val_index]
    losses: list[float] = []
    with seeded(params.seed):
        model = make_model().to(device)
        optimizer = make_optimizer(model, params)
        generator = torch.Generator().manual_seed(params.seed)
        with tqdm(
            total=params.epochs * len(inner_train), desc=f"{description} (epoch selection)", unit="bag"
        ) as progress:
            for epoch in range(1, params.epochs + 1):
                train_epoch(
                    model,
                    inner_train,
                    optimizer,
                    params,
                    epoch=epoch,
                    generator=generator,
                    device=device,
                    progress=progress,
                )
                losses.append(validation_loss(model, inner_val, params, device=device))
                best = int(np.nanargmin(losses)) + 1 if np.isfinite(losses).any() else epoch
                log.info(
                    "%s selection epoch %d: inner-validation NLL %.4f (best epoch %d)",
                    description,
                    epoch,
                    losses[-1],
                    best,
                )
                if epoch - best >= params.patience:
                    break
    selected = int(np.nanargmin(losses)) + 1 if np.isfinite(losses).any() else params.epochs
    log.info("%s: early stopping chose %d epoch(s)", description, selected)
    return {
        "selected_epochs": selected,
        "inner_val_loss": losses,
        "n_inner_train": len(inner_train),
        "n_inner_val": len(inner_val),
        "patience": params.patience,
    }
