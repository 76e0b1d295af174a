"""The Mamba v1 block (Gu & Dao 2023): gated, input-dependent selective state-space layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memamba.models.ssm import selective_scan


class MambaLayer(nn.Module):
    """One Mamba v1 mixer: [B, L, d_model] -> [B, L, d_model], causal along L.

    in_proj -> (x, z); causal depthwise conv1d on x -> SiLU; x_proj -> (low-rank dt, B, C);
    delta = softplus(dt_proj(dt)); A = -exp(A_log) (S4D-real init: A[:, n] = -(n + 1));
    y = selective_scan(x, delta, A, B, C, D) * SiLU(z); out_proj.
    d_state: SSM state size N; d_conv: conv kernel width; expand: d_inner = expand * d_model;
    dt_min / dt_max: range of the initial step size delta (log-uniform), as in Mamba;
    scan_backend: see memamba.models.ssm.selective_scan.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        *,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.scan_backend = scan_backend
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max)

    def _init_dt(self, dt_min: float, dt_max: float) -> None:
        """Initial delta = softplus(dt_proj bias) log-uniform in [dt_min, dt_max]."""
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(
            torch.rand(self.dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp_min(1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, d_model] -> [B, L, d_model]."""
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log)
        y = selective_scan(x, delta, A, B, C, self.D, backend=self.scan_backend)
        return self.out_proj(y * F.silu(z))
