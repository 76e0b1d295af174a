"""Gated attention scores over the tokens of a bag (ABMIL, Ilse et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn


class GatedAttentionScore(nn.Module):
    """One unnormalised score per token: w^T (tanh(V x) * sigmoid(U x)); [N, d_model] -> [N]."""

    def __init__(self, d_model: int, d_hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        d_hidden = d_hidden or d_model
        self.value = nn.Sequential(nn.Linear(d_model, d_hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gate = nn.Sequential(nn.Linear(d_model, d_hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(d_hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, d_model] -> scores [N]."""
        return self.score(self.value(tokens) * self.gate(tokens)).squeeze(-1)
