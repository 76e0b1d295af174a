"""Self-normalising MLP (Klambauer et al. 2017) that embeds one genomic group, as in MCAT's SNN."""

from __future__ import annotations

import math

from torch import nn


def snn_block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ELU -> AlphaDropout, with LeCun-normal weights and zero bias; [.., d_in] -> [.., d_out]."""
    linear = nn.Linear(d_in, d_out)
    nn.init.normal_(linear.weight, std=1.0 / math.sqrt(d_in))
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.ELU(), nn.AlphaDropout(dropout))


def group_snn(group_size: int, d_model: int, dropout: float) -> nn.Sequential:
    """Two SNN blocks: one group's values [g] -> one token [d_model]."""
    return nn.Sequential(snn_block(group_size, d_model, dropout), snn_block(d_model, d_model, dropout))
