"""The interface every survival model of memamba implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class ModelOutput:
    """What a survival model returns for one patient bag.

    logits: [n_bins] discrete-time hazard logits; hazards = sigmoid(logits).
    aux_loss: scalar tensor added to the survival loss (e.g. λ·MMD; zero for models without one).
    """

    logits: torch.Tensor
    aux_loss: torch.Tensor
