"""On a CUDA machine with mamba-ssm: its selective-scan kernel equals memamba's PyTorch scan."""

from __future__ import annotations

import pytest
import torch

from memamba.models.ssm import mamba_ssm_available, selective_scan

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the GPU machine)"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba-ssm's CUDA kernels (GPU extra, see README)"),
]


def cuda_scan_inputs(length: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Mamba-like inputs (batch 2, 64 channels, state 16) on CUDA; A stays float32 as in Mamba."""
    generator = torch.Generator().manual_seed(0)
    batch, channels, state = 2, 64, 16
    u = torch.randn(batch, length, channels, generator=generator)
    delta = torch.nn.functional.softplus(torch.randn(batch, length, channels, generator=generator) - 2)
    A = -torch.exp(torch.randn(channels, state, generator=generator))
    B = torch.randn(batch, length, state, generator=generator)
    C = torch.randn(batch, length, state, generator=generator)
    D = torch.randn(channels, generator=generator)
    tensors = [u.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype), D]
    return [tensor.cuda().requires_grad_() for tensor in tensors]


def outputs_and_gradients(backend: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """y and the gradients of sum(y * w) for every input, all in float32."""
    for tensor in inputs:
        tensor.grad = None
    y = selective_scan(*inputs, backend=backend)
    weights = torch.linspace(-1, 1, y.numel(), device=y.device).reshape(y.shape)
    (y.float() * weights).sum().backward()
    return [y.float().detach()] + [tensor.grad.float() for tensor in inputs]


@pytest.mark.parametrize("length", [1, 100, 2048, 5000])
def test_kernel_equals_torch_scan_in_float32(length: int) -> None:
    inputs = cuda_scan_inputs(length, torch.float32)
    kernel = outputs_and_gradients("mamba_ssm", inputs)
    ours = outputs_and_gradients("torch", inputs)
    for name, got, want in zip(("y", "du", "ddelta", "dA", "dB", "dC", "dD"), ours, kernel, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3, msg=f"{name} differs at L={length}")


@pytest.mark.parametrize("length", [100, 2048])
def test_kernel_in_bfloat16_equals_torch_scan_in_float32(length: int) -> None:
    bf16_inputs = cuda_scan_inputs(length, torch.bfloat16)
    kernel_y = selective_scan(*bf16_inputs, backend="mamba_ssm").float()
    fp32_inputs = [tensor.detach().float() for tensor in bf16_inputs]
    ours_y = selective_scan(*fp32_inputs, backend="torch")
    scale = ours_y.abs().max()
    torch.testing.assert_close(kernel_y / scale, ours_y / scale, rtol=0, atol=2e-2)


def test_mamba_layer_under_bf16_autocast_runs_the_kernel_like_the_torch_scan() -> None:
    from memamba.models.mamba import MambaLayer

    torch.manual_seed(0)
    layer = MambaLayer(64, scan_backend="mamba_ssm").cuda()
    tokens = torch.randn(1, 500, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        kernel = layer(tokens).float()
        layer.scan_backend = "torch"
        ours = layer(tokens).float()
    scale = ours.abs().max()
    torch.testing.assert_close(kernel / scale, ours / scale, rtol=0, atol=3e-2)
