"""Single-modality baselines: SNN on the genomic groups, ABMIL on the patch features."""

from __future__ import annotations

import torch
from torch import nn

from memamba.models.attention import GatedAttentionScore
from memamba.models.base import ModelOutput
from memamba.models.snn import GroupedSNN, snn_block


class SNN(nn.Module):
    """Genomics only: one two-layer SNN per group (GroupedSNN), concatenated, SNN layer, Linear -> n_bins logits.

    d_model: width of each group embedding and of the fusion layer; dropout: AlphaDropout rate.
    """

    def __init__(
        self, group_sizes: list[int] | tuple[int, ...], n_bins: int = 4, d_model: int = 256, dropout: float = 0.25
    ) -> None:
        super().__init__()
        self.embed = GroupedSNN(group_sizes, d_model, dropout)
        self.fuse = snn_block(len(group_sizes) * d_model, d_model, dropout)
        self.head = nn.Linear(d_model, n_bins)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]) -> ModelOutput:
        """genomics: one vector [g_i] per group (features and coords are ignored) -> logits [n_bins]."""
        logits = self.head(self.fuse(self.embed(genomics).flatten()))
        return ModelOutput(logits=logits, aux_loss=logits.new_zeros(()))


class ABMIL(nn.Module):
    """Pathology only: Linear -> ReLU -> dropout, gated-attention pooling, Linear -> n_bins logits.

    d_model: width of the patch embedding; dropout: after the projection and in the attention branch.
    """

    def __init__(self, feature_dim: int, n_bins: int = 4, d_model: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(feature_dim, d_model), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttentionScore(d_model, dropout=dropout)
        self.head = nn.Linear(d_model, n_bins)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]) -> ModelOutput:
        """features [N, feature_dim] (coords and genomics are ignored) -> logits [n_bins]."""
        if len(features) == 0:
            raise ValueError("ABMIL needs at least one patch; the bag is empty")
        tokens = self.project(features)
        weights = torch.softmax(self.attention(tokens), dim=0)
        logits = self.head(weights @ tokens)
        return ModelOutput(logits=logits, aux_loss=logits.new_zeros(()))
