"""Co-attention baselines: MCAT-style genomic-guided attention and MOTCat-style OT co-attention."""

from __future__ import annotations

import torch
from torch import nn

from memamba.models.attention import GatedAttentionScore
from memamba.models.base import ModelOutput
from memamba.models.snn import group_snn
from memamba.models.synergy import SynergisticExpert


class CoAttentionSurvival(nn.Module):
    """The body MCAT (Chen et al. 2021) and MOTCat (Xu & Chen 2023) share; subclasses give co_attend.

    Patches [N, feature_dim] -> Linear -> ReLU -> dropout -> P [N, d]; each genomic group -> SNN ->
    one token, G [M, d]; co_attend(P, G) -> genomic-guided pathology tokens [M, d]; per modality a
    transformer encoder (n_layers, n_heads, feed-forward 2d) and gated-attention pooling; the two
    pooled vectors concatenated -> Linear -> ReLU -> Linear -> ReLU -> Linear -> n_bins logits.
    Only the M guided tokens pass through the transformer, so nothing is quadratic in N.
    """

    def __init__(
        self,
        feature_dim: int,
        group_sizes: list[int] | tuple[int, ...],
        n_bins: int = 4,
        d_model: int = 256,
        n_heads: int = 8,
        n_layers: int = 2,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.group_sizes = tuple(group_sizes)
        self.project = nn.Sequential(nn.Linear(feature_dim, d_model), nn.ReLU(), nn.Dropout(dropout))
        self.embed = nn.ModuleList(group_snn(size, d_model, dropout) for size in self.group_sizes)
        self.path_encoder = _transformer(d_model, n_heads, n_layers, dropout)
        self.omic_encoder = _transformer(d_model, n_heads, n_layers, dropout)
        self.path_pool = GatedAttentionScore(d_model, dropout=dropout)
        self.omic_pool = GatedAttentionScore(d_model, dropout=dropout)
        self.fuse = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU())
        self.head = nn.Linear(d_model, n_bins)

    def co_attend(self, patches: torch.Tensor, genomic: torch.Tensor) -> torch.Tensor:
        """Patch tokens [N, d], genomic tokens [M, d] -> one pathology token per genomic token [M, d]."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]) -> ModelOutput:
        """features [N, feature_dim], genomics: one vector [g_i] per group (coords are ignored) -> logits."""
        sizes = tuple(len(values) for values in genomics)
        if sizes != self.group_sizes:
            raise ValueError(f"genomic group sizes {sizes} differ from the model's {self.group_sizes}")
        if len(features) == 0:
            raise ValueError(f"{type(self).__name__} needs at least one patch; the bag is empty")
        genomic = torch.stack([embed(values) for embed, values in zip(self.embed, genomics, strict=True)])
        guided = self.co_attend(self.project(features), genomic)
        path = self.path_encoder(guided[None])[0]
        omic = self.omic_encoder(genomic[None])[0]
        pooled = torch.cat((_pool(self.path_pool, path), _pool(self.omic_pool, omic)))
        logits = self.head(self.fuse(pooled))
        return ModelOutput(logits=logits, aux_loss=logits.new_zeros(()))


class MCAT(CoAttentionSurvival):
    """MCAT-style: each genomic token queries the whole bag with single-head scaled dot-product attention.

    The attention is computed by torch's fused kernels without the [M, N] weights being returned.
    """

    def __init__(
        self,
        feature_dim: int,
        group_sizes: list[int] | tuple[int, ...],
        n_bins: int = 4,
        d_model: int = 256,
        n_heads: int = 8,
        n_layers: int = 2,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(feature_dim, group_sizes, n_bins, d_model, n_heads, n_layers, dropout)
        self.coattention = nn.MultiheadAttention(d_model, num_heads=1, batch_first=True)

    def co_attend(self, patches: torch.Tensor, genomic: torch.Tensor) -> torch.Tensor:
        """Genomic tokens [M, d] as queries, patch tokens [N, d] as keys and values -> [M, d]."""
        return self.coattention(genomic[None], patches[None], patches[None], need_weights=False)[0][0]


class MOTCat(CoAttentionSurvival):
    """MOTCat-style: the entropic (by default unbalanced) OT plan between patches and genomic tokens is
    the co-attention; each genomic token receives the plan-weighted mean of its patches (barycentric
    projection, memamba.models.synergy.SynergisticExpert without MMD).

    MOTCat solves OT on random subsets of patches (mini-batch OT); we solve it for the whole bag with
    memamba.ot (streaming backend by default: O(N + M) memory per Sinkhorn update).
    ot_blur: ε = blur^2 (MOTCat's reg 0.1 ≈ 0.3^2); ot_reach: ρ = reach^2 (its τ 0.5 ≈ 0.7^2; None =
    balanced); ot_cost, ot_backend, ot_scaling, ot_tolerance: see memamba.ot.sinkhorn_potentials.
    """

    def __init__(
        self,
        feature_dim: int,
        group_sizes: list[int] | tuple[int, ...],
        n_bins: int = 4,
        d_model: int = 256,
        n_heads: int = 8,
        n_layers: int = 2,
        dropout: float = 0.25,
        ot_backend: str = "streaming",
        ot_blur: float = 0.3,
        ot_reach: float | None = 0.7,
        ot_cost: str = "cosine",
        ot_scaling: float = 0.9,
        ot_tolerance: float | None = 1e-3,
    ) -> None:
        super().__init__(feature_dim, group_sizes, n_bins, d_model, n_heads, n_layers, dropout)
        self.transport = SynergisticExpert(
            ot_backend=ot_backend,
            blur=ot_blur,
            reach=ot_reach,
            cost=ot_cost,
            scaling=ot_scaling,
            tolerance=ot_tolerance,
            use_mmd=False,
        )

    def co_attend(self, patches: torch.Tensor, genomic: torch.Tensor) -> torch.Tensor:
        """Barycentric projection of the patches [N, d] through the OT plan onto the genomic tokens [M, d]."""
        return self.transport(patches, genomic)[0]


def _transformer(d_model: int, n_heads: int, n_layers: int, dropout: float) -> nn.TransformerEncoder:
    """Post-norm transformer encoder over [1, T, d_model] (MCAT's: ReLU, feed-forward 2 * d_model)."""
    layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout, batch_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


def _pool(score: GatedAttentionScore, tokens: torch.Tensor) -> torch.Tensor:
    """Softmax(gated-attention scores)-weighted mean of tokens [T, d] -> [d]."""
    return torch.softmax(score(tokens), dim=0) @ tokens
