"""Pathology and genomics experts: token embeddings followed by dual-scan (conventional + attention) Mamba."""

from __future__ import annotations

import torch
from torch import nn

from memamba.models.attention import GatedAttentionScore
from memamba.models.mamba import MambaLayer
from memamba.models.scan_order import ORDER_MODES, spatial_order
from memamba.models.snn import GroupedSNN

SCANS = ("conventional", "attention")
COMBINES = ("sum", "gate")


def check_scans(scans: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The scans as a tuple; ValueError unless a non-empty subset of SCANS."""
    scans = tuple(scans)
    if not scans or any(scan not in SCANS for scan in scans):
        raise ValueError(f"scans must be a non-empty subset of {SCANS}, got {scans}")
    return scans


class DualScanBlock(nn.Module):
    """Pre-norm residual block mixing tokens with Mamba along two orders; [N, d_model] -> [N, d_model].

    conventional: Mamba over the tokens in the given order (spatial order of patches, group order of
    genomic tokens). attention: a gated-attention score per token; tokens sorted by decreasing score,
    scanned, put back in place and multiplied by sigmoid(score), which lets the score learn. The two
    outputs are summed (combine="sum") or mixed by a learned per-channel gate (combine="gate"; with a
    single scan there is nothing to mix and the gate is not built).
    """

    def __init__(
        self,
        d_model: int,
        scans: tuple[str, ...] = SCANS,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        combine: str = "sum",
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.scans = check_scans(scans)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; valid: {', '.join(COMBINES)}")
        mamba_args = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "scan_backend": scan_backend}
        self.norm = nn.LayerNorm(d_model)
        self.conventional = MambaLayer(d_model, **mamba_args) if "conventional" in self.scans else None
        if "attention" in self.scans:
            self.attention_score = GatedAttentionScore(d_model)
            self.attention = MambaLayer(d_model, **mamba_args)
        self.gate = nn.Linear(d_model, d_model) if combine == "gate" and len(self.scans) == 2 else None

    def forward(self, tokens: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [N, d_model], order [N] (permutation for the conventional scan; None = as given)."""
        normed = self.norm(tokens)
        outputs = []
        if self.conventional is not None:
            outputs.append(_scan_in_order(self.conventional, normed, order))
        if "attention" in self.scans:
            scores = self.attention_score(normed)
            by_score = torch.argsort(scores, descending=True, stable=True)
            scanned = _scan_in_order(self.attention, normed, by_score)
            outputs.append(scanned * torch.sigmoid(scores)[:, None])
        if self.gate is not None:
            weight = torch.sigmoid(self.gate(normed))
            return tokens + weight * outputs[0] + (1 - weight) * outputs[1]
        return tokens + sum(outputs)


def _scan_in_order(layer: MambaLayer, tokens: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """Run layer over tokens [N, d] visited in order [N]; the outputs are returned in input order."""
    if order is None:
        return layer(tokens[None])[0]
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=order.device))
    scanned = layer(_PermuteRows.apply(tokens, order, inverse)[None])[0]
    return _PermuteRows.apply(scanned, inverse, order)


class _PermuteRows(torch.autograd.Function):
    """rows[order] for a permutation order [N] whose inverse [N] is given; backward is grad[inverse].

    Autograd's own backward of a row gather scatters with accumulation (index_put_ / index_add_), which
    on CUDA uses atomics, or a sort under deterministic algorithms; a permutation needs only a gather.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return rows.index_select(0, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


class PathologyExpert(nn.Module):
    """Patch features [N, feature_dim] + coords [N, 2] -> pathology tokens [N, d_model].

    Linear -> ReLU -> dropout projection, then n_layers DualScanBlocks (the conventional scan follows
    spatial_order(coords, order_mode)), then LayerNorm.
    """

    def __init__(
        self,
        feature_dim: int,
        d_model: int,
        n_layers: int = 1,
        scans: tuple[str, ...] = SCANS,
        order_mode: str = "row_major",
        *,
        dropout: float = 0.25,
        **block_args: object,
    ) -> None:
        super().__init__()
        if order_mode not in ORDER_MODES:
            raise ValueError(f"unknown order_mode {order_mode!r}; valid: {', '.join(ORDER_MODES)}")
        self.order_mode = order_mode
        self.project = nn.Sequential(nn.Linear(feature_dim, d_model), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(DualScanBlock(d_model, scans, **block_args) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """features [N, feature_dim], coords [N, 2] -> tokens [N, d_model].

        order: spatial_order(coords, order_mode) when the caller has it already (None = compute it).
        """
        if order is None:
            order = spatial_order(coords, self.order_mode).to(features.device)
        tokens = self.project(features)
        for block in self.blocks:
            tokens = block(tokens, order)
        return self.norm(tokens)


class GenomicsExpert(nn.Module):
    """Genomic groups (one vector [g_i] each) -> genomic tokens [M, d_model], M = number of groups.

    One two-layer SNN per group (GroupedSNN) embeds the group into one token; n_layers DualScanBlocks follow
    (the conventional scan visits the groups in their given order), then LayerNorm.
    """

    def __init__(
        self,
        group_sizes: list[int] | tuple[int, ...],
        d_model: int,
        n_layers: int = 1,
        scans: tuple[str, ...] = SCANS,
        *,
        dropout: float = 0.25,
        **block_args: object,
    ) -> None:
        super().__init__()
        self.embed = GroupedSNN(group_sizes, d_model, dropout)
        self.blocks = nn.ModuleList(DualScanBlock(d_model, scans, **block_args) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, genomics: list[torch.Tensor]) -> torch.Tensor:
        """genomics: list of M vectors [g_i] -> tokens [M, d_model]."""
        tokens = self.embed(genomics)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
