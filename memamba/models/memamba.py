"""ME-Mamba: pathology and genomics experts, OT/MMD synergistic expert, Mamba backbone, hazard logits."""

from __future__ import annotations

import torch
from torch import nn

from memamba.models.base import ModelOutput
from memamba.models.experts import SCANS, DualScanBlock, GenomicsExpert, PathologyExpert, check_scans
from memamba.models.scan_order import spatial_order
from memamba.models.synergy import SynergisticExpert

MODALITIES = ("pathology", "genomics")


class MEMamba(nn.Module):
    """ME-Mamba survival model for one patient bag (our reading of Zhang et al., arXiv 2509.16900).

    Both modalities: pathology tokens P [N, d] and genomic tokens G [M, d] -> synergistic expert ->
    aligned pathology A [M, d] -> interleaved tokens (A_1, G_1, A_2, G_2, …) [2M, d] -> backbone ->
    LayerNorm -> mean over tokens -> Linear -> n_bins logits; aux_loss = mmd_weight * MMD(A, G).
    One modality: its expert's tokens go straight to the backbone (patches in spatial order) and
    aux_loss is 0.

    Parameters: d_model: token width; n_layers: DualScanBlocks per expert; scans: the expert scans
    ("conventional", "attention"); order_mode: spatial order of patches ("row_major", "hilbert");
    backbone_layers / backbone_scans: the backbone's DualScanBlocks (default: one conventional Mamba);
    use_ot / use_mmd / ot_*: see SynergisticExpert; mmd_weight: λ of the fusion loss;
    modalities: which inputs are used; d_state, expand, combine, scan_backend: see DualScanBlock;
    dropout: after the patch projection and in the genomic SNNs.
    """

    def __init__(
        self,
        feature_dim: int,
        group_sizes: list[int] | tuple[int, ...],
        n_bins: int = 4,
        d_model: int = 128,
        n_layers: int = 1,
        scans: tuple[str, ...] = SCANS,
        order_mode: str = "row_major",
        use_ot: bool = True,
        use_mmd: bool = True,
        mmd_weight: float = 0.1,
        modalities: tuple[str, ...] = MODALITIES,
        ot_backend: str = "streaming",
        ot_blur: float = 0.1,
        ot_reach: float | None = None,
        ot_cost: str = "cosine",
        ot_scaling: float = 0.9,
        ot_tolerance: float | None = 1e-3,
        backbone_layers: int = 1,
        backbone_scans: tuple[str, ...] = ("conventional",),
        d_state: int = 16,
        expand: int = 2,
        combine: str = "sum",
        scan_backend: str = "auto",
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        self.order_mode = order_mode
        self.mmd_weight = mmd_weight
        block_args = {"d_state": d_state, "expand": expand, "combine": combine, "scan_backend": scan_backend}
        scans = check_scans(scans)
        self.pathology = (
            PathologyExpert(feature_dim, d_model, n_layers, scans, order_mode, dropout=dropout, **block_args)
            if "pathology" in self.modalities
            else None
        )
        self.genomics = (
            GenomicsExpert(group_sizes, d_model, n_layers, scans, dropout=dropout, **block_args)
            if "genomics" in self.modalities
            else None
        )
        self.synergy = (
            SynergisticExpert(
                ot_backend=ot_backend,
                blur=ot_blur,
                reach=ot_reach,
                cost=ot_cost,
                scaling=ot_scaling,
                tolerance=ot_tolerance,
                use_ot=use_ot,
                use_mmd=use_mmd,
            )
            if len(self.modalities) == 2
            else None
        )
        backbone_scans = check_scans(backbone_scans)
        self.backbone = nn.ModuleList(
            DualScanBlock(d_model, backbone_scans, **block_args) for _ in range(backbone_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_bins)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]) -> ModelOutput:
        """features [N, feature_dim], coords [N, 2], genomics: one vector [g_i] per group."""
        tokens, order, aux_loss = self._backbone_input(features, coords, genomics)
        for block in self.backbone:
            tokens = block(tokens, order)
        logits = self.head(self.norm(tokens).mean(dim=0))
        return ModelOutput(logits=logits, aux_loss=aux_loss)

    def _backbone_input(
        self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Backbone tokens [T, d_model], their scan order [T] (None = as given) and the aux loss."""
        no_aux_loss = self.head.weight.new_zeros(())
        if self.pathology is None:
            return self.genomics(genomics), None, no_aux_loss
        if len(features) == 0:
            raise ValueError("the bag has no patches; a genomics-only model needs modalities=('genomics',)")
        order = spatial_order(coords, self.order_mode).to(features.device)
        pathology = self.pathology(features, coords, order)
        if self.genomics is None:
            return pathology, order, no_aux_loss
        genomic = self.genomics(genomics)
        aligned, mmd_loss = self.synergy(pathology, genomic)
        interleaved = torch.stack((aligned, genomic), dim=1).flatten(0, 1)
        return interleaved, None, self.mmd_weight * mmd_loss
