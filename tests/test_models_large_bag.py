"""ME-Mamba on a bag of whole-slide size on the CPU (must-have 7: forward + backward of 20k patches).

ResNet-50-trunc-sized features (1024-d) and the default state size; d_model 32 keeps the test at about
2 s on one busy core (memory of the scan is tested in test_ssm_memory.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from memamba.models.registry import build_model


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread (on a busy shared machine, more threads only wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_memamba_forward_backward_on_twenty_thousand_patches_gives_finite_gradients() -> None:
    torch.manual_seed(0)
    group_sizes = (94, 334, 521, 468, 1496, 479)
    model = build_model("memamba", feature_dim=1024, group_sizes=group_sizes, d_model=32)
    side = 142
    cells = torch.randperm(side * side)[:20_000]
    coords = torch.stack((cells % side, cells // side), dim=1) * 256
    output = model(torch.randn(20_000, 1024), coords, [torch.randn(size) for size in group_sizes])
    (output.logits.sum() + output.aux_loss).backward()
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.aux_loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
