"""Discrete-time survival likelihood (MCAT/MOTCat form), survival curves and risks from hazard logits.

Notation for one patient with K bins: hazards h_k = sigmoid(logit_k), survival S_k = prod_{j<=k} (1 - h_j)
(probability of outliving bin k), S_{-1} = 1. A patient with an event in bin y contributes
-log S_{y-1} - log h_y; a patient censored in bin y contributes -log S_y. Everything is computed in log
space (log h = logsigmoid(logit), log(1 - h) = logsigmoid(-logit)), so no term is ever log(0) and no
eps clamp is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def survival_nll(
    logits: torch.Tensor, time_bin: torch.Tensor, censorship: torch.Tensor, *, alpha: float = 0.0
) -> torch.Tensor:
    """Mean discrete-time negative log-likelihood over a batch.

    logits: [B, K] hazard logits; time_bin: int64 [B] in 0 … K-1; censorship: [B], 1 = censored.
    alpha: weight of the extra uncensored term, loss = (1 - alpha)·(uncensored + censored) + alpha·uncensored
    (MCAT's `alpha_surv`; its published runs use 0). Returns a scalar tensor.
    """
    import torch
    import torch.nn.functional as F

    time_bin = time_bin.long().reshape(-1, 1)
    censored = censorship.to(logits.dtype).reshape(-1)
    log_hazard = F.logsigmoid(logits)
    log_survival = torch.cumsum(F.logsigmoid(-logits), dim=1)
    log_survival_padded = torch.cat([torch.zeros_like(log_survival[:, :1]), log_survival], dim=1)

    log_survival_before = log_survival_padded.gather(1, time_bin).squeeze(1)
    log_hazard_at = log_hazard.gather(1, time_bin).squeeze(1)
    log_survival_through = log_survival_padded.gather(1, time_bin + 1).squeeze(1)

    uncensored = -(1.0 - censored) * (log_survival_before + log_hazard_at)
    censored_term = -censored * log_survival_through
    loss = (1.0 - alpha) * (uncensored + censored_term) + alpha * uncensored
    return loss.mean()


def survival_curve(logits: torch.Tensor) -> torch.Tensor:
    """Survival S_k = prod_{j<=k} (1 - sigmoid(logit_j)): [..., K] logits -> [..., K] probabilities."""
    import torch
    import torch.nn.functional as F

    return torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=-1))


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """MCAT's risk score -sum_k S_k (higher = shorter expected survival): [..., K] -> [...]."""
    return -survival_curve(logits).sum(dim=-1)
