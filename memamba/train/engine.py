"""Training epochs and predictions over patient bags: one bag per step, gradient accumulation, seeded order."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memamba.evaluate.metrics import MetricValue, harrell_c
from memamba.train.loss import risk_from_logits, survival_curve, survival_nll
from memamba.train.params import TrainParams

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm

    from memamba.cohort.bags import PatientBag

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the patient, the epoch and the step."""


@dataclass
class EpochResult:
    """Mean training loss (NLL + auxiliary) and Harrell's C of the risks seen during one epoch."""

    epoch: int
    train_loss: float
    train_c_index: MetricValue


@dataclass
class Predictions:
    """Model outputs for a list of bags: risk [n] (-sum S) and survival curves [n, K]."""

    risk: np.ndarray
    survival: np.ndarray


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator and switch on deterministic algorithms (warn-only) for the block.

    The previous deterministic-algorithm setting is restored on exit.
    """
    import torch

    was_enabled = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_enabled, warn_only=was_warn_only)


def make_optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, with the run's learning rate and weight decay."""
    import torch

    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[params.optimizer]
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return optimizer_class(trainable, lr=params.lr, weight_decay=params.weight_decay)


def cap_patches(
    bag: PatientBag, max_patches: int | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [n, D] and coords [n, 2] of at most `max_patches` random patches, in their original order."""
    import torch

    n_patches = bag.features.shape[0]
    if max_patches is None or n_patches <= max_patches:
        return bag.features, bag.coords
    keep = torch.randperm(n_patches, generator=generator)[:max_patches].sort().values
    return bag.features[keep], bag.coords[keep]


def train_epoch(
    model: torch.nn.Module,
    bags: Sequence[PatientBag],
    optimizer: torch.optim.Optimizer,
    params: TrainParams,
    *,
    epoch: int,
    generator: torch.Generator,
    device: torch.device,
    progress: tqdm | None = None,
) -> EpochResult:
    """One pass over `bags` in a seeded random order; the optimiser steps every `grad_accum` bags and at the end.

    epoch: 1-based, for messages. Raises NonFiniteLossError on a NaN/infinite loss.
    """
    import torch

    model.train()
    optimizer.zero_grad(set_to_none=True)
    order = torch.randperm(len(bags), generator=generator).tolist()
    losses, risks = [], []
    for step, index in enumerate(order, start=1):
        bag = bags[index]
        features, coords = cap_patches(bag, params.max_patches, generator)
        with _autocast(device):
            output = model(features.to(device), coords.to(device), [group.to(device) for group in bag.genomics])
        logits = output.logits.float().reshape(1, -1)
        target = torch.tensor([bag.time_bin], device=device)
        censorship = torch.tensor([bag.censorship], device=device)
        loss = survival_nll(logits, target, censorship, alpha=params.alpha) + output.aux_loss.float()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} for patient {bag.case_id} at epoch {epoch}, step {step} "
                f"of {len(order)}; check that patient's features/genomics or lower the learning rate"
            )
        (loss / params.grad_accum).backward()
        if step % params.grad_accum == 0 or step == len(order):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        risks.append(risk_from_logits(logits.detach()).item())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", refresh=False)

    ordered = [bags[index] for index in order]
    c_index = harrell_c(
        [bag.survival_months for bag in ordered], [bag.censorship for bag in ordered], risks
    )
    return EpochResult(epoch=epoch, train_loss=float(np.mean(losses)) if losses else float("nan"),
                       train_c_index=c_index)


def predict(model: torch.nn.Module, bags: Sequence[PatientBag], *, device: torch.device) -> Predictions:
    """Risks and survival curves of every bag (all patches, eval mode, no gradients), in input order."""
    import torch

    model.eval()
    risks, curves = [], []
    with torch.no_grad():
        for bag in bags:
            with _autocast(device):
                output = model(
                    bag.features.to(device), bag.coords.to(device), [group.to(device) for group in bag.genomics]
                )
            logits = output.logits.float().reshape(-1)
            curves.append(survival_curve(logits).cpu().numpy())
            risks.append(risk_from_logits(logits).item())
    n_bins = curves[0].shape[0] if curves else 0
    return Predictions(
        risk=np.asarray(risks, dtype=float), survival=np.asarray(curves, dtype=float).reshape(len(bags), n_bins)
    )


def validation_loss(
    model: torch.nn.Module, bags: Sequence[PatientBag], params: TrainParams, *, device: torch.device
) -> float:
    """Mean discrete-time NLL of `bags` (eval mode, all patches, no gradients, no auxiliary loss)."""
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for bag in bags:
            with _autocast(device):
                output = model(
                    bag.features.to(device), bag.coords.to(device), [group.to(device) for group in bag.genomics]
                )
            logits = output.logits.float().reshape(1, -1)
            target = torch.tensor([bag.time_bin], device=device)
            censorship = torch.tensor([bag.censorship], device=device)
            losses.append(survival_nll(logits, target, censorship, alpha=params.alpha).item())
    return float(np.mean(losses)) if losses else float("nan")


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op elsewhere."""
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
