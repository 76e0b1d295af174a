"""Encoder registry: foundation-model architectures, their layers, weight sources and provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from memamba.errors import InputError
from memamba.features.encoder_layers import ClassAndMeanPatchTokens, ConvStem
from memamba.features.registry import PRETRAINED, build_encoder, encoder_names, get_encoder_spec
from memamba.features.weights import state_dict_sha256

# name: (output dim, parameters in millions as published on the model cards)
FOUNDATION_MODELS = {
    "uni_vit_large": (1024, 303),
    "uni2_h": (1536, 681),
    "virchow2": (2560, 631),
    "h_optimus_0": (1536, 1135),
    "prov_gigapath": (1536, 1135),
    "ctranspath": (768, 27.5),
}


@pytest.mark.parametrize("name", sorted(FOUNDATION_MODELS))
def test_foundation_model_architecture_has_its_published_size_and_output_dim(name: str) -> None:
    spec = get_encoder_spec(name)
    with torch.device("meta"):
        model = spec.builder(spec, False)
        output = model(torch.zeros(2, 3, spec.input_size, spec.input_size))
    dim, millions = FOUNDATION_MODELS[name]
    assert spec.output_dim == dim and output.shape == (2, dim)
    assert sum(parameter.numel() for parameter in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.01)


def test_every_encoder_has_a_normalisation_with_positive_std() -> None:
    for name in encoder_names():
        mean, std = get_encoder_spec(name).normalization()
        assert len(mean) == len(std) == 3 and min(std) > 0, name


def test_h_optimus_0_uses_its_own_normalisation() -> None:
    assert get_encoder_spec("h_optimus_0").normalization()[0] == (0.707223, 0.578729, 0.703617)


def test_pretrained_weights_offline_raise_input_error_pointing_to_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"uni2_h: .*MahmoodLab/UNI2-h.*HF_HUB_OFFLINE.*--weights PATH"):
        build_encoder(get_encoder_spec("uni2_h"), PRETRAINED, allow_random_weights=False)


def test_ctranspath_has_no_download_and_says_to_pass_its_checkpoint() -> None:
    with pytest.raises(InputError, match=r"ctranspath.*--weights PATH"):
        build_encoder(get_encoder_spec("ctranspath"), PRETRAINED, allow_random_weights=False)


def test_ctranspath_checkpoint_with_stale_swin_buffers_loads_through_timms_filter(tmp_path: Path) -> None:
    spec = get_encoder_spec("ctranspath")
    model, _ = build_encoder(spec, None, allow_random_weights=True)
    state = {"model": {**model.state_dict(), "layers.0.blocks.0.attn_mask": torch.zeros(4, 49, 49)}}
    torch.save(state, tmp_path / "ctranspath.pth")
    loaded, digest = build_encoder(spec, tmp_path / "ctranspath.pth", allow_random_weights=False)
    assert len(digest) == 64 and state_dict_sha256(loaded) == state_dict_sha256(model)


def test_state_dict_sha256_changes_when_one_weight_changes() -> None:
    model = torch.nn.Linear(3, 2)
    before = state_dict_sha256(model)
    with torch.no_grad():
        model.weight[0, 0] += 1
    assert state_dict_sha256(model) != before


def test_virchow2_embedding_is_class_token_then_mean_of_patch_tokens() -> None:
    tokens = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    embedding = ClassAndMeanPatchTokens(num_prefix_tokens=5)(tokens)
    assert torch.equal(embedding, torch.cat([tokens[:, 0], tokens[:, 5:].mean(dim=1)], dim=-1))


def test_convstem_maps_images_to_quarter_resolution_nhwc_tokens() -> None:
    stem = ConvStem(img_size=224, patch_size=4, embed_dim=96, norm_layer=torch.nn.LayerNorm)
    assert stem(torch.zeros(1, 3, 224, 224)).shape == (1, 56, 56, 96) and stem.grid_size == (56, 56)
