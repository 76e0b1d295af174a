"""Selective scan (Mamba v1 S6 recurrence) with a pure-PyTorch backend and the mamba-ssm CUDA kernel.

Recurrence, per batch b, channel d and state n (shapes: u, delta [B, L, D]; A [D, N]; B, C [B, L, N]):

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,     h_0 = 0
    y_t = sum_n C_t[n] * h_t[:, n] + D_skip * u_t

A must be negative (Mamba parametrises A = -exp(A_log)), so every decay exp(delta * A) lies in (0, 1].
"""

from __future__ import annotations

import importlib.util

import torch

BACKENDS = ("auto", "torch", "mamba_ssm")
DEFAULT_CHUNK_SIZE = 1024


def mamba_ssm_available() -> bool:
    """True when the mamba-ssm package (CUDA selective-scan kernel) can be imported."""
    return importlib.util.find_spec("mamba_ssm") is not None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D_skip: torch.Tensor | None = None,
    *,
    backend: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Run the selective scan; returns y [B, L, D] in the dtype of u.

    backend: "torch" (chunked parallel scan in plain PyTorch, any device), "mamba_ssm" (CUDA kernel; tensors must be on
    CUDA) or "auto" (mamba_ssm for CUDA tensors when it is installed, torch otherwise).
    chunk_size: time steps per chunk of the torch backend (ignored by mamba_ssm). The scan is bound by
    kernel launches, so long chunks are faster while memory grows only with log2(chunk_size): on an
    H200, L = 10,000, D = 256, N = 16 took 1.0 s forward + backward with chunks of 32 and 0.07 s with
    1024 (peak 2.0 vs 3.5 GiB).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "mamba_ssm" if u.is_cuda and mamba_ssm_available() else "torch"
    if backend == "mamba_ssm":
        return _scan_mamba_ssm(u, delta, A, B, C, D_skip)
    return _scan_torch(u, delta, A, B, C, D_skip, chunk_size)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D_skip: torch.Tensor | None = None,
) -> torch.Tensor:
    """The recurrence step by step (slow; the ground truth for tests). Shapes as in selective_scan."""
    batch, length, channels = u.shape
    h = u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, t, :, None] * A)
        h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        outputs.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    y = torch.stack(outputs, dim=1)
    return y if D_skip is None else y + u * D_skip


def _scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D_skip: torch.Tensor | None,
    chunk_size: int,
) -> torch.Tensor:
    """Chunked scan: a parallel prefix scan inside each chunk, the state [B, D, N] carried between chunks."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch, length, channels = u.shape
    h = u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        states = _chunk_states(u[:, start:stop], delta[:, start:stop], A, B[:, start:stop], h)
        outputs.append(torch.einsum("btdn,btn->btd", states, C[:, start:stop]))
        h = states[:, -1]
    y = torch.cat(outputs, dim=1)
    return y if D_skip is None else y + u * D_skip


def _chunk_states(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, h0: torch.Tensor
) -> torch.Tensor:
    """States h_t [B, T, D, N] of one chunk of T steps, starting from h0 [B, D, N].

    Each step is the affine map h -> a_t * h + x_t with decay a_t = exp(delta_t * A) in (0, 1] and
    input x_t = delta_t * B_t * u_t. A parallel prefix scan (Hillis-Steele, ceil(log2 T) tensor
    operations over the whole chunk) composes these maps: after the step with offset k, position t
    holds the composition of steps t-2k+1 … t, i.e. the cumulative decay prod_s a_s and the decayed
    input sum_s (prod_{s<r<=t} a_r) x_s. Only products of decays <= 1 are formed, never a division
    by a decay or an exponential of a positive number, so the scan neither overflows nor cancels
    (a closed form through cumulative log-decays, exp(S_t - S_s), loses about |S_t| * machine-epsilon
    of relative precision in float32 when decays are strong).
    """
    decay = torch.exp(delta[..., None] * A)
    state = (delta * u)[..., None] * B[:, :, None, :]
    offset = 1
    while offset < u.shape[1]:
        state = torch.cat((state[:, :offset], state[:, offset:] + decay[:, offset:] * state[:, :-offset]), dim=1)
        decay = torch.cat((decay[:, :offset], decay[:, offset:] * decay[:, :-offset]), dim=1)
        offset *= 2
    return state + decay * h0[:, None]


def _scan_mamba_ssm(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D_skip: torch.Tensor | None,
) -> torch.Tensor:
    """The mamba-ssm CUDA kernel, which takes channels-first tensors ([B, D, L], [B, N, L])."""
    if not u.is_cuda:
        raise ValueError("the mamba_ssm selective-scan backend needs CUDA tensors; use backend='torch'")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    y = selective_scan_fn(
        u.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A.contiguous(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        None if D_skip is None else D_skip.float().contiguous(),
    )
    return y.transpose(1, 2)
