"""Selective scan backends and the Mamba layer."""

from __future__ import annotations

import pytest
import torch

from memamba.models.mamba import MambaLayer
from memamba.models.ssm import selective_scan, selective_scan_reference


def scan_inputs(length: int, dtype: torch.dtype, *, seed: int = 0, step: float = 1.0) -> dict[str, torch.Tensor]:
    """Random inputs of a selective scan: batch 2, 5 channels, state 4; A < 0 as in Mamba."""
    generator = torch.Generator().manual_seed(seed)
    batch, channels, state = 2, 5, 4

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return {
        "u": randn(batch, length, channels),
        "delta": step * torch.nn.functional.softplus(randn(batch, length, channels)),
        "A": -torch.exp(randn(channels, state)),
        "B": randn(batch, length, state),
        "C": randn(batch, length, state),
        "D_skip": randn(channels),
    }


LENGTHS_AND_CHUNKS = [(1, 16), (7, 16), (15, 16), (16, 16), (17, 16), (63, 64), (65, 64), (1000, 64), (1000, 256)]


@pytest.mark.parametrize(("length", "chunk_size"), LENGTHS_AND_CHUNKS)
def test_torch_scan_equals_recurrence_in_float64(length: int, chunk_size: int) -> None:
    inputs = scan_inputs(length, torch.float64)
    scanned = selective_scan(**inputs, backend="torch", chunk_size=chunk_size)
    torch.testing.assert_close(scanned, selective_scan_reference(**inputs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("length", "chunk_size"), LENGTHS_AND_CHUNKS)
def test_torch_scan_equals_recurrence_in_float32(length: int, chunk_size: int) -> None:
    inputs = scan_inputs(length, torch.float32)
    scanned = selective_scan(**inputs, backend="torch", chunk_size=chunk_size)
    torch.testing.assert_close(scanned, selective_scan_reference(**inputs), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(("length", "chunk_size"), [(7, 16), (17, 16), (130, 64)])
def test_torch_scan_gradients_equal_recurrence_gradients(length: int, chunk_size: int) -> None:
    inputs = {name: value.requires_grad_() for name, value in scan_inputs(length, torch.float64).items()}
    weights = torch.randn(2, length, 5, dtype=torch.float64)
    scanned = (selective_scan(**inputs, backend="torch", chunk_size=chunk_size) * weights).sum()
    reference = (selective_scan_reference(**inputs) * weights).sum()
    scanned_grads = torch.autograd.grad(scanned, list(inputs.values()))
    reference_grads = torch.autograd.grad(reference, list(inputs.values()))
    for name, got, expected in zip(inputs, scanned_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-8, msg=f"gradient of {name}")


def test_torch_scan_stays_finite_when_decays_underflow() -> None:
    inputs = scan_inputs(300, torch.float32, step=50.0)
    scanned = selective_scan(**inputs, backend="torch")
    assert torch.isfinite(scanned).all()
    torch.testing.assert_close(scanned, selective_scan_reference(**inputs), rtol=1e-3, atol=1e-3)


def test_torch_scan_without_skip_term_drops_it() -> None:
    inputs = scan_inputs(9, torch.float64)
    with_skip = selective_scan(**inputs, backend="torch")
    inputs["D_skip"], skip = None, inputs["D_skip"]
    torch.testing.assert_close(selective_scan(**inputs, backend="torch") + inputs["u"] * skip, with_skip)


def test_auto_backend_uses_torch_scan_on_cpu() -> None:
    inputs = scan_inputs(20, torch.float64)
    torch.testing.assert_close(selective_scan(**inputs), selective_scan(**inputs, backend="torch"))


def test_mamba_ssm_backend_rejects_cpu_tensors() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        selective_scan(**scan_inputs(4, torch.float32), backend="mamba_ssm")


def test_unknown_scan_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="torch"):
        selective_scan(**scan_inputs(4, torch.float32), backend="triton")


def test_mamba_layer_is_causal() -> None:
    torch.manual_seed(0)
    layer = MambaLayer(8, d_state=4).double()
    tokens = torch.randn(1, 20, 8, dtype=torch.float64)
    changed = tokens.clone()
    changed[:, 10] += 1.0
    before, after = layer(tokens), layer(changed)
    assert before.shape == (1, 20, 8)
    torch.testing.assert_close(after[:, :10], before[:, :10], rtol=0, atol=0)
    assert not torch.allclose(after[:, 10:], before[:, 10:])


def test_mamba_layer_starts_with_s4d_real_state_matrix() -> None:
    layer = MambaLayer(8, d_state=4)
    expected = -torch.arange(1, 5, dtype=torch.float32).expand(16, 4)
    torch.testing.assert_close(-torch.exp(layer.A_log), expected)


def test_torch_scan_gradients_under_bfloat16_autocast_match_float32_gradients() -> None:
    exact = {name: value.to(torch.bfloat16).float() for name, value in scan_inputs(40, torch.float32).items()}
    mixed = {
        name: value.to(torch.bfloat16) if name in ("u", "delta", "B", "C") else value for name, value in exact.items()
    }
    for inputs in (exact, mixed):
        for value in inputs.values():
            value.requires_grad_()
    selective_scan(**exact, backend="torch", chunk_size=16).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scanned = selective_scan(**mixed, backend="torch", chunk_size=16)
    scanned.float().sum().backward()
    for name in exact:
        assert mixed[name].grad.dtype == mixed[name].dtype, name
        torch.testing.assert_close(mixed[name].grad.float(), exact[name].grad, rtol=2e-2, atol=2e-2, msg=name)
