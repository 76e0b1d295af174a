"""MCAT-style and MOTCat-style co-attention baselines in the shared model harness."""

from __future__ import annotations

import pytest
import torch

from memamba.errors import InputError
from memamba.models.registry import MODEL_NAMES, build_model

GROUP_SIZES = (3, 5, 4, 6, 2, 7)
FEATURE_DIM = 12
SMALL = {"d_model": 8, "n_heads": 2}
COATTENTION_MODELS = ("mcat", "motcat")


def bag(n_patches: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Random patient bag: features [N, FEATURE_DIM], coords [N, 2], one vector per genomic group."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n_patches, FEATURE_DIM, generator=generator)
    coords = torch.randint(0, 50, (n_patches, 2), generator=generator) * 256
    return features, coords, [torch.randn(size, generator=generator) for size in GROUP_SIZES]


def model(name: str, **params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, **{**SMALL, **params})


def test_coattention_models_are_registered() -> None:
    assert set(COATTENTION_MODELS) <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", COATTENTION_MODELS)
def test_coattention_model_gives_finite_logits_and_a_gradient_for_every_parameter(name: str) -> None:
    network = model(name)
    output = network(*bag(40))
    assert output.logits.shape == (4,) and torch.isfinite(output.logits).all()
    assert float(output.aux_loss) == 0.0
    output.logits.sum().backward()
    for parameter_name, parameter in network.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.parametrize("name", COATTENTION_MODELS)
def test_coattention_model_ignores_the_order_of_patches(name: str) -> None:
    network = model(name).eval()
    features, coords, genomics = bag(40)
    permutation = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        network(features[permutation], coords[permutation], genomics).logits,
        network(features, coords, genomics).logits,
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("name", COATTENTION_MODELS)
def test_coattention_model_uses_the_patches(name: str) -> None:
    network = model(name).eval()
    features, coords, genomics = bag(40)
    assert not torch.allclose(network(features, coords, genomics).logits, network(-features, coords, genomics).logits)


@pytest.mark.parametrize("name", COATTENTION_MODELS)
def test_coattention_model_rejects_an_empty_bag(name: str) -> None:
    with pytest.raises(ValueError, match="at least one patch"):
        model(name)(*bag(0))


@pytest.mark.parametrize("name", COATTENTION_MODELS)
def test_coattention_model_rejects_groups_of_other_sizes(name: str) -> None:
    features, coords, genomics = bag(10)
    with pytest.raises(ValueError, match="group sizes"):
        model(name)(features, coords, genomics[:-1])


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(InputError, match="multiple of n_heads"):
        model("mcat", d_model=10, n_heads=4)


@pytest.mark.parametrize(
    "params",
    [{"ot_reach": None}, {"ot_backend": "tensorized", "ot_tolerance": None}, {"ot_backend": "auto"}],
    ids=["balanced", "tensorized", "auto"],
)
def test_motcat_trains_with_every_ot_variant(params: dict[str, object]) -> None:
    network = model("motcat", **params)
    output = network(*bag(30))
    output.logits.sum().backward()
    assert torch.isfinite(output.logits).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())


def test_motcat_handles_a_bag_of_twenty_thousand_patches() -> None:
    features, coords, genomics = bag(20_000)
    output = model("motcat")(features, coords, genomics)
    output.logits.sum().backward()
    assert torch.isfinite(output.logits).all()
