"""BatchNorm folding: same features, no BatchNorm left, models it cannot fold left as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from memamba.features import extract
from memamba.features.batch_norm_folding import fold_batch_norms
from memamba.features.extract import encode_patches
from memamba.features.registry import build_encoder, get_encoder_spec


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """resnet50_trunc with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model, _ = build_encoder(get_encoder_spec("resnet50_trunc"), None, allow_random_weights=True)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return model.eval()


def test_folded_resnet_has_no_batch_norm_and_gives_the_same_features(resnet: nn.Module) -> None:
    images = torch.randn(4, 3, 224, 224)
    folded = fold_batch_norms(resnet)
    assert batch_norms(resnet) > 40 and batch_norms(folded) == 0
    with torch.inference_mode():
        expected, actual = resnet(images), folded(images)
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_encode_patches_features_do_not_depend_on_folding(resnet: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_encoder_spec("resnet50_trunc")
    images = torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8)
    batches = [(images, torch.zeros(3, dtype=torch.bool))]
    folded, _ = encode_patches(resnet, spec, batches, 3, torch.device("cpu"))
    monkeypatch.setattr(extract, "FOLD_BATCH_NORMS", False)
    plain, _ = encode_patches(resnet, spec, batches, 3, torch.device("cpu"))
    np.testing.assert_allclose(folded, plain, rtol=1e-4, atol=1e-4 * float(np.abs(plain).max()))


class Branching(nn.Module):
    """A convolution and BatchNorm behind data-dependent control flow, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(images)) if images.sum() > 0 else images


def test_models_without_batch_norm_in_training_or_untraceable_are_returned_as_they_are() -> None:
    without = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4)).eval()
    training = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    untraceable = Branching().eval()
    for model in (without, training, untraceable):
        assert fold_batch_norms(model) is model
    assert batch_norms(untraceable) == 1
