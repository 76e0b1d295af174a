"""MCAT-style and MOTCat-style co-attention baselines in the shared model harness."""

from __future__ import annotations

import pytest
import torch

from memamba.errors import InputError
from memamba.models.coattention import CoAttentionSurvival, split_bag
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


@pytest.mark.parametrize(("n_patches", "micro_batch"), [(1000, 256), (10, 3), (7, 7), (5, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_split_bag_puts_every_patch_in_exactly_one_near_equal_chunk(
    n_patches: int, micro_batch: int, shuffle: bool
) -> None:
    tokens = torch.arange(n_patches, dtype=torch.float32)[:, None].expand(-1, 3)
    chunks = split_bag(tokens, micro_batch, shuffle=shuffle)
    sizes = [len(chunk) for chunk in chunks]
    assert len(chunks) == -(-n_patches // micro_batch)
    assert max(sizes) <= micro_batch and max(sizes) - min(sizes) <= 1
    taken = torch.cat(chunks)[:, 0]
    assert torch.equal(torch.sort(taken).values, tokens[:, 0])
    assert torch.equal(taken, tokens[:, 0]) != (shuffle and len(chunks) > 1)


def test_motcat_micro_batches_are_deterministic_in_evaluation_mode() -> None:
    network = model("motcat", micro_batch=16).eval()
    features, coords, genomics = bag(50)
    torch.manual_seed(1)
    first = network(features, coords, genomics).logits
    torch.manual_seed(2)
    torch.testing.assert_close(network(features, coords, genomics).logits, first, rtol=0, atol=0)


@pytest.mark.parametrize("training", [False, True])
def test_motcat_with_one_micro_batch_is_the_full_bag_model(training: bool) -> None:
    features, coords, genomics = bag(40)
    outputs = []
    for micro_batch in (None, 40, 1000):
        network = model("motcat", micro_batch=micro_batch).train(training)
        torch.manual_seed(3)
        outputs.append(network(features, coords, genomics).logits)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)


def test_motcat_micro_batch_logits_are_the_mean_over_chunks() -> None:
    network = model("motcat", micro_batch=10).eval()
    features, coords, genomics = bag(25)
    patches, genomic = network.project(features), network.embed(genomics)
    expected = torch.stack(
        [CoAttentionSurvival.bag_logits(network, chunk, genomic) for chunk in patches.tensor_split(3)]
    )
    torch.testing.assert_close(network(features, coords, genomics).logits, expected.mean(dim=0))


def test_motcat_trains_with_micro_batches_and_rejects_a_size_below_one() -> None:
    network = model("motcat", micro_batch=8)
    output = network(*bag(30))
    output.logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    with pytest.raises(InputError, match="micro_batch"):
        model("motcat", micro_batch=0)
