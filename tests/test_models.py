"""Scan orders, expert blocks, the synergistic expert, ME-Mamba, baselines and the model registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from memamba.errors import InputError
from memamba.models.baselines import ABMIL, SNN
from memamba.models.experts import DualScanBlock, GenomicsExpert, PathologyExpert, _scan_in_order
from memamba.models.registry import MODEL_NAMES, build_model, model_parameters
from memamba.models.scan_order import spatial_order
from memamba.models.synergy import SynergisticExpert

GROUP_SIZES = (3, 5, 4, 6, 2, 7)
FEATURE_DIM = 12
SMALL = {"d_model": 8, "d_state": 4}


def bag(n_patches: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Random patient bag: features [N, FEATURE_DIM], distinct grid coords [N, 2] (µm-like), genomic groups."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randperm(max(n_patches, 1) * 4, generator=generator)[:n_patches]
    coords = torch.stack((cells % 50, cells // 50), dim=1) * 256
    genomics = [torch.randn(size, generator=generator) for size in GROUP_SIZES]
    return torch.randn(n_patches, FEATURE_DIM, generator=generator), coords, genomics


def grid_coords(side: int) -> torch.Tensor:
    """All cells of a side x side grid of 256 px patches, shuffled; [side², 2]."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    coords = torch.stack((xs.flatten(), ys.flatten()), dim=1) * 256
    return coords[torch.randperm(side * side, generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize("mode", ["row_major", "hilbert"])
def test_spatial_order_is_a_permutation(mode: str) -> None:
    coords = torch.randint(0, 5, (200, 2), generator=torch.Generator().manual_seed(0)) * 512
    order = spatial_order(coords, mode)
    assert torch.equal(torch.sort(order).values, torch.arange(200))


def test_row_major_order_sorts_by_y_then_x() -> None:
    ordered = grid_coords(6)[spatial_order(grid_coords(6), "row_major")]
    keys = [(int(y), int(x)) for x, y in ordered]
    assert keys == sorted(keys)


def test_row_major_order_breaks_ties_by_input_position() -> None:
    coords = torch.randint(0, 4, (300, 2), generator=torch.Generator().manual_seed(2)) * 256
    expected = sorted(range(300), key=lambda i: (int(coords[i, 1]), int(coords[i, 0]), i))
    assert spatial_order(coords, "row_major").tolist() == expected


def test_hilbert_order_steps_to_a_grid_neighbour_each_time() -> None:
    ordered = grid_coords(8)[spatial_order(grid_coords(8), "hilbert")]
    steps = (ordered[1:] - ordered[:-1]).abs().sum(dim=1)
    assert torch.equal(steps, torch.full((63,), 256))


def test_hilbert_order_keeps_neighbours_closer_than_row_major_on_average() -> None:
    coords = grid_coords(16)
    window = 16

    def mean_spread(order: torch.Tensor) -> float:
        points = coords[order].float().unfold(0, window, window)
        return float((points.amax(dim=-1) - points.amin(dim=-1)).sum(dim=1).mean())

    assert mean_spread(spatial_order(coords, "hilbert")) < mean_spread(spatial_order(coords, "row_major"))


def test_spatial_order_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="hilbert"):
        spatial_order(grid_coords(2), "zigzag")


def block(scans: tuple[str, ...], **args: object) -> DualScanBlock:
    torch.manual_seed(0)
    return DualScanBlock(8, scans, d_state=4, **args).double().eval()


def test_dual_scan_block_is_equivariant_to_permuting_tokens_with_their_coords() -> None:
    tokens, coords = torch.randn(30, 8, dtype=torch.float64), grid_coords(6)[:30]
    permutation = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    layer = block(("conventional", "attention"))
    expected = layer(tokens, spatial_order(coords))[permutation]
    got = layer(tokens[permutation], spatial_order(coords[permutation]))
    torch.testing.assert_close(got, expected)


def test_attention_scan_is_equivariant_to_permuting_tokens_alone() -> None:
    tokens = torch.randn(30, 8, dtype=torch.float64)
    permutation = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    layer = block(("attention",))
    torch.testing.assert_close(layer(tokens[permutation]), layer(tokens)[permutation])


def test_conventional_scan_depends_on_token_order() -> None:
    tokens = torch.randn(30, 8, dtype=torch.float64)
    permutation = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    layer = block(("conventional",))
    assert not torch.allclose(layer(tokens[permutation]), layer(tokens)[permutation])


def test_scan_in_order_puts_outputs_and_gradients_back_in_input_order() -> None:
    layer = block(("conventional",)).conventional
    tokens = torch.randn(30, 8, dtype=torch.float64)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(30, 8, dtype=torch.float64)
    expected_input, got_input = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    expected = layer(expected_input[order][None])[0][torch.argsort(order)]
    got = _scan_in_order(layer, got_input, order)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(got_input.grad, expected_input.grad)


def test_attention_scores_receive_gradient() -> None:
    layer = block(("attention",))
    layer(torch.randn(30, 8, dtype=torch.float64)).square().sum().backward()
    for name, parameter in layer.attention_score.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_gated_combination_mixes_both_scans() -> None:
    layer = block(("conventional", "attention"), combine="gate")
    layer(torch.randn(30, 8, dtype=torch.float64)).square().sum().backward()
    assert layer.gate.weight.grad.abs().sum() > 0
    assert layer.conventional.in_proj.weight.grad.abs().sum() > 0
    assert layer.attention.in_proj.weight.grad.abs().sum() > 0


def test_dual_scan_block_rejects_unknown_scan() -> None:
    with pytest.raises(ValueError, match="conventional"):
        DualScanBlock(8, ("diagonal",))


def test_pathology_expert_gives_one_token_per_patch() -> None:
    features, coords, _ = bag(17)
    expert = PathologyExpert(FEATURE_DIM, 8, n_layers=2, order_mode="hilbert", d_state=4)
    assert expert(features, coords).shape == (17, 8)


def test_genomics_expert_gives_one_token_per_group() -> None:
    _, _, genomics = bag(1)
    assert GenomicsExpert(GROUP_SIZES, 8, d_state=4)(genomics).shape == (6, 8)


def test_genomics_expert_rejects_groups_of_other_sizes() -> None:
    _, _, genomics = bag(1)
    with pytest.raises(ValueError, match="group sizes"):
        GenomicsExpert(GROUP_SIZES, 8, d_state=4)(genomics[:-1])


def test_synergistic_expert_aligns_pathology_onto_genomic_grid() -> None:
    generator = torch.Generator().manual_seed(0)
    pathology, genomic = torch.randn(40, 8, generator=generator), torch.randn(6, 8, generator=generator)
    aligned, loss = SynergisticExpert()(pathology, genomic)
    assert aligned.shape == (6, 8) and loss.ndim == 0 and loss.item() > 0


def test_synergistic_expert_aligned_tokens_are_means_of_patches() -> None:
    pathology = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    aligned, _ = SynergisticExpert(blur=100.0)(pathology, torch.randn(6, 8))
    torch.testing.assert_close(aligned, pathology.mean(dim=0).expand(6, -1), rtol=0, atol=1e-3)


def test_synergistic_expert_solves_ot_in_float32_under_bfloat16_autocast() -> None:
    pathology, genomic = torch.randn(50, 8), torch.randn(6, 8)
    expected = SynergisticExpert()(pathology, genomic)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aligned = SynergisticExpert()(pathology, genomic)[0]
    assert aligned.dtype == torch.float32
    torch.testing.assert_close(aligned, expected)


def test_synergistic_expert_without_mmd_has_zero_loss() -> None:
    _, loss = SynergisticExpert(use_mmd=False)(torch.randn(40, 8), torch.randn(6, 8))
    assert float(loss) == 0.0


def test_synergistic_expert_refuses_tolerance_with_geomloss_backend() -> None:
    with pytest.raises(ValueError, match="streaming"):
        SynergisticExpert(ot_backend="tensorized")


def memamba(**params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("memamba", feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, **{**SMALL, **params})


def test_memamba_forward_backward_gives_finite_logits_and_gradients() -> None:
    model = memamba()
    output = model(*bag(50))
    assert output.logits.shape == (4,) and torch.isfinite(output.logits).all()
    assert output.aux_loss.item() > 0
    (output.logits.sum() + output.aux_loss).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


ABLATIONS = {
    "no_ot": {"use_ot": False},
    "no_mmd": {"use_mmd": False},
    "conventional_only": {"scans": ("conventional",)},
    "attention_only": {"scans": ("attention",)},
    "pathology_only": {"modalities": ("pathology",)},
    "genomics_only": {"modalities": ("genomics",)},
    "hilbert_order": {"order_mode": "hilbert"},
    "gated_combine": {"combine": "gate"},
    "unbalanced_ot": {"ot_reach": 1.0},
    "tensorized_ot": {"ot_backend": "tensorized", "ot_tolerance": None},
    "deeper": {"n_layers": 2, "backbone_layers": 2, "backbone_scans": ["conventional", "attention"]},
}


@pytest.mark.parametrize("params", ABLATIONS.values(), ids=ABLATIONS.keys())
def test_every_ablation_builds_and_trains(params: dict[str, object]) -> None:
    model = memamba(**params)
    output = model(*bag(30))
    (output.logits.sum() + output.aux_loss).backward()
    assert output.logits.shape == (4,) and torch.isfinite(output.logits).all()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("params", [{"use_mmd": False}, {"modalities": ("pathology",)}, {"modalities": ("genomics",)}])
def test_ablations_without_mmd_have_zero_aux_loss(params: dict[str, object]) -> None:
    assert float(memamba(**params)(*bag(30)).aux_loss) == 0.0


def test_single_modality_models_build_only_their_expert() -> None:
    assert memamba(modalities=("pathology",)).genomics is None
    assert memamba(modalities=("genomics",)).pathology is None


def test_memamba_handles_a_bag_of_one_patch() -> None:
    assert torch.isfinite(memamba()(*bag(1)).logits).all()


def test_memamba_handles_a_bag_of_thousands_of_patches() -> None:
    assert torch.isfinite(memamba()(*bag(3000)).logits).all()


def test_genomics_only_memamba_accepts_a_bag_without_patches() -> None:
    assert memamba(modalities=("genomics",))(*bag(0)).logits.shape == (4,)


def test_multimodal_memamba_rejects_a_bag_without_patches() -> None:
    with pytest.raises(ValueError, match="no patches"):
        memamba()(*bag(0))


@pytest.mark.parametrize("model_class", [SNN, ABMIL])
def test_baselines_give_logits_and_zero_aux_loss(model_class: type) -> None:
    model = build_model(model_class.__name__.lower(), feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, d_model=8)
    output = model(*bag(20))
    output.logits.sum().backward()
    assert output.logits.shape == (4,) and float(output.aux_loss) == 0.0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_abmil_pools_patches_independently_of_their_order() -> None:
    model = build_model("abmil", feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, d_model=8).eval()
    features, coords, genomics = bag(20)
    permutation = torch.randperm(20)
    torch.testing.assert_close(
        model(features[permutation], coords[permutation], genomics).logits, model(features, coords, genomics).logits
    )


def test_build_model_knows_every_listed_name() -> None:
    for name in MODEL_NAMES:
        assert isinstance(build_model(name, feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES), torch.nn.Module)


def test_build_model_rejects_unknown_name_listing_valid_ones() -> None:
    with pytest.raises(InputError, match="memamba, snn, abmil"):
        build_model("transmil", feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES)


def test_build_model_rejects_unknown_parameter_listing_valid_ones() -> None:
    with pytest.raises(InputError, match=r"n_heads.*valid parameters: .*d_model"):
        build_model("memamba", feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, n_heads=4)


def test_build_model_turns_invalid_values_into_input_errors() -> None:
    with pytest.raises(InputError, match="scans"):
        build_model("memamba", feature_dim=FEATURE_DIM, group_sizes=GROUP_SIZES, scans=["diagonal"])


def test_model_parameters_exclude_data_derived_inputs() -> None:
    parameters = model_parameters("memamba")
    assert parameters["d_model"] == 128 and "feature_dim" not in parameters and "n_bins" not in parameters


def test_importing_the_models_package_and_registry_does_not_import_torch() -> None:
    code = "import sys, memamba.models, memamba.models.registry; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_memamba_runs_where_mamba_ssm_cannot_be_imported() -> None:
    code = (
        "import sys; sys.modules['mamba_ssm'] = None\n"
        "import torch\n"
        "from memamba.models.registry import build_model\n"
        "model = build_model('memamba', feature_dim=4, group_sizes=[2, 3], d_model=8, d_state=4)\n"
        "out = model(torch.randn(5, 4), torch.randint(0, 9, (5, 2)), [torch.randn(2), torch.randn(3)])\n"
        "sys.exit(not torch.isfinite(out.logits).all())\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
