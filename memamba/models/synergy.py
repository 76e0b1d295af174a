"""Synergistic expert: align pathology tokens onto the genomic tokens with OT, and an MMD fusion loss."""

from __future__ import annotations

import torch
from torch import nn

from memamba.ot import (
    COSTS,
    DEFAULT_BANDWIDTHS,
    OT_BACKENDS,
    barycentric_projection,
    cost_matrix,
    mmd,
    normalize_rows,
    sinkhorn_plan,
)


class SynergisticExpert(nn.Module):
    """Pathology tokens P [N, d] + genomic tokens G [M, d] -> aligned pathology A [M, d] and MMD loss.

    use_ot=True: entropic OT (memamba.ot) between the whole bag P and G with uniform masses; A_j is the
    barycentric projection of P onto G_j through the transport plan (the plan-weighted mean of the
    patches sent to genomic token j). use_ot=False: the same Gibbs kernel exp(-C / ε) without the
    transport constraint, i.e. each genomic token attends over the patches with softmax(-C(·, G_j) / ε);
    this ablation changes only the marginal constraint and adds no parameters.
    use_mmd: MMD² (memamba.ot.mmd, biased) between the L2-normalised A and G, so that the bandwidths
    mean the same whatever the token scale; 0 when off.
    ot_backend, blur, reach, cost, scaling, tolerance: see memamba.ot.sinkhorn_potentials (tolerance
    needs the streaming or auto backend: the GeomLoss backends stop after the ε-scaling schedule).
    The module has no parameters of its own (its bandwidths are a buffer outside the state dict).
    """

    def __init__(
        self,
        *,
        ot_backend: str = "streaming",
        blur: float = 0.1,
        reach: float | None = None,
        cost: str = "cosine",
        scaling: float = 0.9,
        tolerance: float | None = 1e-3,
        use_ot: bool = True,
        use_mmd: bool = True,
        mmd_bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS,
    ) -> None:
        super().__init__()
        if ot_backend not in OT_BACKENDS:
            raise ValueError(f"unknown ot_backend {ot_backend!r}; valid: {', '.join(OT_BACKENDS)}")
        if cost not in COSTS:
            raise ValueError(f"unknown OT cost {cost!r}; valid: {', '.join(COSTS)}")
        if tolerance is not None and ot_backend not in ("streaming", "auto"):
            message = f"an OT tolerance needs ot_backend 'streaming' or 'auto'; set it to None for {ot_backend!r}"
            raise ValueError(message)
        self.ot_args = {
            "blur": blur,
            "reach": reach,
            "cost": cost,
            "scaling": scaling,
            "tolerance": tolerance,
            "backend": ot_backend,
        }
        self.blur, self.cost = blur, cost
        self.use_ot, self.use_mmd = use_ot, use_mmd
        self.register_buffer("mmd_bandwidths", torch.tensor(mmd_bandwidths, dtype=torch.float32), persistent=False)

    def forward(self, pathology: torch.Tensor, genomics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pathology [N, d], genomics [M, d] -> (aligned pathology [M, d], MMD loss scalar), in float32.

        OT runs in float32 even under autocast: a bfloat16 cost divided by a small ε would shift the
        Gibbs kernel's exponents by tenths of a nat.
        """
        with torch.autocast(pathology.device.type, enabled=False):
            return self._align(pathology.float(), genomics.float())

    def _align(self, pathology: torch.Tensor, genomics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward without the autocast guard."""
        if self.use_ot:
            plan = sinkhorn_plan(pathology, genomics, **self.ot_args)
        else:
            plan = torch.softmax(-cost_matrix(pathology, genomics, self.cost) / self.blur**2, dim=0)
        aligned = barycentric_projection(plan, pathology)
        if not self.use_mmd:
            return aligned, genomics.new_zeros(())
        loss = mmd(normalize_rows(aligned), normalize_rows(genomics), self.mmd_bandwidths)
        return aligned, loss
