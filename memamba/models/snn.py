"""Self-normalising MLPs (Klambauer et al. 2017) that embed genomic groups, as in MCAT's SNN."""

from __future__ import annotations

import math

import torch
from torch import nn


def snn_block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ELU -> AlphaDropout, with LeCun-normal weights and zero bias; [.., d_in] -> [.., d_out]."""
    linear = nn.Linear(d_in, d_out)
    nn.init.normal_(linear.weight, std=1.0 / math.sqrt(d_in))
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.ELU(), nn.AlphaDropout(dropout))


class GroupedSNN(nn.Module):
    """One two-layer SNN per genomic group, all groups at once: M vectors [g_i] -> M tokens [M, d_model].

    The maths of M separate snn_block(g_i, d) -> snn_block(d, d) stacks, computed with two batched
    matrix products: the groups are zero-padded to the largest, G = max g_i, and layer 1 holds one
    [G, d] weight per group (weight1 [M, G, d], as x @ W, i.e. nn.Linear's weight transposed) whose rows
    beyond g_i are zero. Padding rows meet only zero inputs, so they add nothing and their gradient is
    exactly zero (weight decay keeps them at zero too). LeCun-normal init with each group's own fan-in;
    zero biases; ELU and AlphaDropout act on all M tokens at once (in training the dropout masks are
    drawn for all groups together, so they differ from M separate draws).
    """

    def __init__(self, group_sizes: list[int] | tuple[int, ...], d_model: int, dropout: float) -> None:
        super().__init__()
        self.group_sizes = tuple(group_sizes)
        if not self.group_sizes or min(self.group_sizes) < 1:
            raise ValueError(f"genomic groups must be non-empty, got sizes {self.group_sizes}")
        n_groups, width = len(self.group_sizes), max(self.group_sizes)
        self.weight1 = nn.Parameter(torch.zeros(n_groups, width, d_model))
        self.bias1 = nn.Parameter(torch.zeros(n_groups, 1, d_model))
        self.weight2 = nn.Parameter(torch.empty(n_groups, d_model, d_model))
        self.bias2 = nn.Parameter(torch.zeros(n_groups, 1, d_model))
        self.activation1 = nn.Sequential(nn.ELU(), nn.AlphaDropout(dropout))
        self.activation2 = nn.Sequential(nn.ELU(), nn.AlphaDropout(dropout))
        positions = torch.cat([torch.arange(size) + group * width for group, size in enumerate(self.group_sizes)])
        self.register_buffer("positions", positions, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """LeCun normal: std 1/sqrt(fan-in) per group; padding rows stay zero."""
        with torch.no_grad():
            for weight, size in zip(self.weight1, self.group_sizes, strict=True):
                nn.init.normal_(weight[:size], std=1.0 / math.sqrt(size))
            nn.init.normal_(self.weight2, std=1.0 / math.sqrt(self.weight2.shape[1]))

    def forward(self, genomics: list[torch.Tensor]) -> torch.Tensor:
        """genomics: M vectors [g_i] (sizes as group_sizes) -> tokens [M, d_model]."""
        sizes = tuple(len(values) for values in genomics)
        if sizes != self.group_sizes:
            raise ValueError(f"genomic group sizes {sizes} differ from the model's {self.group_sizes}")
        values = torch.cat(genomics)
        padded = values.new_zeros(self.weight1.shape[:2].numel()).index_copy_(0, self.positions, values)
        hidden = self.activation1(torch.baddbmm(self.bias1, padded.view(len(sizes), 1, -1), self.weight1))
        return self.activation2(torch.baddbmm(self.bias2, hidden, self.weight2)).squeeze(1)
