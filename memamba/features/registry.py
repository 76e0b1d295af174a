"""Encoder registry: one name → how to build the model, its input, normalisation, output and precision.

Models are always built with `pretrained=False`: this stage never downloads. Pretrained weights come
from a local file (`build_encoder(spec, weights=PATH, …)`); letting timm fetch them (`pretrained=True`,
`hf-hub:` names) is for online machines and a later addition to this registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memamba.errors import InputError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = "random"


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one patch encoder and feed it.

    `builder(spec)` returns the model with random weights. `mean`/`std` (RGB, on the 0–1 scale) of
    None are taken from timm's pretrained configuration of `architecture`. `precision` is the autocast
    dtype on CUDA ("bfloat16", "float16" or "float32"); CPU always runs float32.
    `ignored_weight_prefixes`: checkpoint keys dropped before the strict load (parts the encoder cuts off).
    """

    name: str
    architecture: str
    builder: Callable[[EncoderSpec], torch.nn.Module]
    output_dim: int
    input_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    precision: str = "bfloat16"
    timm_kwargs: Mapping[str, object] = field(default_factory=dict)
    ignored_weight_prefixes: tuple[str, ...] = ()

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per RGB channel on the 0–1 scale."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        import timm

        config = timm.models.get_pretrained_cfg(self.architecture)
        return tuple(config.mean), tuple(config.std)


def _build_timm(spec: EncoderSpec) -> torch.nn.Module:
    """timm model `spec.architecture` without classifier (pooled features out), random weights."""
    import timm

    return timm.create_model(spec.architecture, pretrained=False, num_classes=0, **spec.timm_kwargs)


def _build_resnet_truncated(spec: EncoderSpec) -> torch.nn.Module:
    """timm ResNet cut after layer3, then global average pooling (1024-d for ResNet-50)."""
    import torch

    model = _build_timm(spec)
    model.layer4 = torch.nn.Identity()
    model.num_features = spec.output_dim
    return model


_UNI_VIT_LARGE = EncoderSpec(
    name="uni_vit_large",
    architecture="vit_large_patch16_224",
    builder=_build_timm,
    output_dim=1024,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    timm_kwargs={"init_values": 1e-5, "dynamic_img_size": True},
)

_REGISTRY: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="resnet50_trunc",
            architecture="resnet50",
            builder=_build_resnet_truncated,
            output_dim=1024,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            ignored_weight_prefixes=("layer4.", "fc."),
        ),
        _UNI_VIT_LARGE,
        EncoderSpec(
            name="vit_large_patch16_224",
            architecture="vit_large_patch16_224",
            builder=_build_timm,
            output_dim=1024,
            ignored_weight_prefixes=("head.",),
        ),
    )
}


def encoder_names() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registered spec called `name`; an unknown name raises InputError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown encoder {name!r}: choose one of {', '.join(encoder_names())}") from None


def build_encoder(spec: EncoderSpec, weights: Path | None, allow_random_weights: bool) -> tuple[torch.nn.Module, str]:
    """Build `spec`'s model in eval mode on the CPU; return (model, sha256 of `weights` or "random").

    `weights`: a .safetensors or .pth/.pt state dict, loaded strictly. Without it, random weights are
    used only when `allow_random_weights` (seeded, so reruns give identical features).
    """
    import torch

    from memamba.features.weights import file_sha256, load_weights

    check_weights_choice(spec, weights, allow_random_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = spec.builder(spec)
    if weights is None:
        logger.warning(
            "encoder %s has RANDOM weights: its features carry no pretrained knowledge "
            "(fine for tests and the demo, meaningless for real cohorts)",
            spec.name,
        )
        digest = RANDOM_WEIGHTS
    else:
        load_weights(model, Path(weights), spec.ignored_weight_prefixes)
        digest = file_sha256(Path(weights))
    return model.eval(), digest


def check_weights_choice(spec: EncoderSpec, weights: Path | None, allow_random_weights: bool) -> None:
    """Raise InputError unless weights are given or random weights are explicitly allowed."""
    if weights is None and not allow_random_weights:
        raise InputError(f"no weights for encoder {spec.name}: pass --weights PATH or --allow-random-weights")
