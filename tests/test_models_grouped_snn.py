"""GroupedSNN: M per-group SNNs as batched matrix products, the same maths as M separate SNN stacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memamba.models.snn import GroupedSNN, snn_block

GROUP_SIZES = (3, 5, 4, 6, 2, 7)
D_MODEL = 8


def reference_and_grouped() -> tuple[list[nn.Sequential], GroupedSNN]:
    """M separate two-block SNNs and a GroupedSNN holding copies of their weights (float64, eval mode)."""
    torch.manual_seed(0)
    reference = [
        nn.Sequential(snn_block(size, D_MODEL, 0.25), snn_block(D_MODEL, D_MODEL, 0.25)) for size in GROUP_SIZES
    ]
    grouped = GroupedSNN(GROUP_SIZES, D_MODEL, 0.25)
    with torch.no_grad():
        for group, (size, stack) in enumerate(zip(GROUP_SIZES, reference, strict=True)):
            first, second = stack[0][0], stack[1][0]
            grouped.weight1[group, :size] = first.weight.T
            grouped.bias1[group, 0] = first.bias
            grouped.weight2[group] = second.weight.T
            grouped.bias2[group, 0] = second.bias
    return [stack.double().eval() for stack in reference], grouped.double().eval()


def genomics(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=generator, dtype=dtype) for size in GROUP_SIZES]


def test_grouped_snn_gives_the_outputs_and_gradients_of_separate_snns() -> None:
    reference, grouped = reference_and_grouped()
    values = genomics()
    expected = torch.stack([stack(group) for stack, group in zip(reference, values, strict=True)])
    got = grouped(values)
    torch.testing.assert_close(got, expected)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    for group, (size, stack) in enumerate(zip(GROUP_SIZES, reference, strict=True)):
        first, second = stack[0][0], stack[1][0]
        torch.testing.assert_close(grouped.weight1.grad[group, :size], first.weight.grad.T)
        torch.testing.assert_close(grouped.bias1.grad[group, 0], first.bias.grad)
        torch.testing.assert_close(grouped.weight2.grad[group], second.weight.grad.T)
        torch.testing.assert_close(grouped.bias2.grad[group, 0], second.bias.grad)
        assert torch.count_nonzero(grouped.weight1.grad[group, size:]) == 0


def test_padding_rows_stay_zero_through_training_with_weight_decay() -> None:
    grouped = GroupedSNN(GROUP_SIZES, D_MODEL, 0.25).train()
    optimizer = torch.optim.Adam(grouped.parameters(), lr=0.1, weight_decay=0.1)
    for seed in range(3):
        optimizer.zero_grad()
        grouped(genomics(seed, torch.float32)).square().sum().backward()
        optimizer.step()
    for group, size in enumerate(GROUP_SIZES):
        assert torch.count_nonzero(grouped.weight1[group, size:]) == 0
        assert torch.count_nonzero(grouped.weight1[group, :size]) == size * D_MODEL


def test_first_layer_is_lecun_normal_with_each_groups_fan_in() -> None:
    torch.manual_seed(0)
    grouped = GroupedSNN((4, 400), 512, 0.25).requires_grad_(False)
    assert float(grouped.weight1[0, :4].std()) == pytest.approx(4**-0.5, rel=0.1)
    assert float(grouped.weight1[1].std()) == pytest.approx(400**-0.5, rel=0.1)
    assert float(grouped.weight2.std()) == pytest.approx(512**-0.5, rel=0.1)


def test_grouped_snn_rejects_groups_of_other_sizes() -> None:
    with pytest.raises(ValueError, match="group sizes"):
        GroupedSNN(GROUP_SIZES, D_MODEL, 0.25)(genomics()[:-1])
