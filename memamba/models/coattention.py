"""Co-attention baselines: MCAT-style genomic-guided attention and MOTCat-style OT co-attention."""

from __future__ import annotations

import math

import torch
from torch import nn

from memamba.models.attention import GatedAttentionScore
from memamba.models.base import ModelOutput
from memamba.models.snn import GroupedSNN
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
        self.project = nn.Sequential(nn.Linear(feature_dim, d_model), nn.ReLU(), nn.Dropout(dropout))
        self.embed = GroupedSNN(group_sizes, d_model, dropout)
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
        if len(features) == 0:
            raise ValueError(f"{type(self).__name__} needs at least one patch; the bag is empty")
        logits = self.bag_logits(self.project(features), self.embed(genomics))
        return ModelOutput(logits=logits, aux_loss=logits.new_zeros(()))

    def bag_logits(self, patches: torch.Tensor, genomic: torch.Tensor) -> torch.Tensor:
        """Patch tokens [N, d], genomic tokens [M, d] -> logits [n_bins] (co-attention, transformers, head)."""
        guided = self.co_attend(patches, genomic)
        path = self.path_encoder(guided[None])[0]
        omic = self.omic_encoder(genomic[None])[0]
        pooled = torch.cat((_pool(self.path_pool, path), _pool(self.omic_pool, omic)))
        return self.head(self.fuse(pooled))


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

    ot_blur: ε = blur^2 (MOTCat's reg 0.1 ≈ 0.3^2); ot_reach: ρ = reach^2 (its τ 0.5 ≈ 0.7^2; None =
    balanced); ot_cost, ot_backend, ot_scaling, ot_tolerance: see memamba.ot.sinkhorn_potentials.

    micro_batch: None = one OT over the whole bag (memamba.ot, streaming backend by default: O(N + M)
    memory per Sinkhorn update). An int = MOTCat's own training scheme (its script: 256): the bag is
    split into ceil(N / micro_batch) near-equal chunks (split_bag: a random permutation from torch's
    generator in training mode, the input order in evaluation mode), and the co-attention (one OT per
    chunk), the transformers and the head run on each chunk in turn. MOTCat averages the chunks'
    losses (training) and risks (evaluation); we average their logits, so that every model gives one
    set of logits per patient to the same loss. Its OT is POT's unbalanced Sinkhorn on the CPU in
    float64; ours stays on the model's device, which is faster. The patch projection and the genomic
    SNNs run once per bag (MOTCat's trainer reruns them per chunk: the same maths, with dropout masks
    drawn per chunk there).
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
        micro_batch: int | None = None,
    ) -> None:
        super().__init__(feature_dim, group_sizes, n_bins, d_model, n_heads, n_layers, dropout)
        if micro_batch is not None and micro_batch < 1:
            raise ValueError(f"micro_batch must be None or a positive number of patches, got {micro_batch}")
        self.micro_batch = micro_batch
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

    def bag_logits(self, patches: torch.Tensor, genomic: torch.Tensor) -> torch.Tensor:
        """The mean of the chunks' logits [n_bins] with micro_batch (one chunk: the whole-bag logits)."""
        if self.micro_batch is None:
            return super().bag_logits(patches, genomic)
        chunk_logits = super().bag_logits
        chunks = split_bag(patches, self.micro_batch, shuffle=self.training)
        return torch.stack([chunk_logits(chunk, genomic) for chunk in chunks]).mean(dim=0)


def split_bag(tokens: torch.Tensor, micro_batch: int, *, shuffle: bool) -> tuple[torch.Tensor, ...]:
    """tokens [N, d] as ceil(N / micro_batch) chunks whose sizes differ by at most one, each patch in one.

    shuffle: the chunks take the patches in a random order (torch.randperm on the tokens' device);
    else in input order. A bag that fits in one chunk is returned as is (never permuted).
    """
    count = math.ceil(len(tokens) / micro_batch)
    if shuffle and count > 1:
        tokens = tokens[torch.randperm(len(tokens), device=tokens.device)]
    return tokens.tensor_split(count)


def _transformer(d_model: int, n_heads: int, n_layers: int, dropout: float) -> nn.TransformerEncoder:
    """Post-norm transformer encoder over [1, T, d_model] (MCAT's: ReLU, feed-forward 2 * d_model)."""
    layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout, batch_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


def _pool(score: GatedAttentionScore, tokens: torch.Tensor) -> torch.Tensor:
    """Softmax(gated-attention scores)-weighted mean of tokens [T, d] -> [d]."""
    return torch.softmax(score(tokens), dim=0) @ tokens
