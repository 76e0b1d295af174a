"""Encoder registry: one name → how to build the model, its input, normalisation, output and weight source.

Weights come from one of three places, never silently from none:
- a local file (`weights=PATH`, .safetensors or .pth; its sha256 is recorded): offline clusters;
- `weights="pretrained"`: timm downloads the encoder's `pretrained_source` (a timm tag or an `hf-hub:`
  repository; gated ones need a Hugging Face token); online machines only, a clear error offline;
- random weights, only with `allow_random_weights` (demo and tests).

The timm keyword arguments of the pathology foundation models follow their model cards (UNI, UNI2-h,
Virchow2, H-optimus-0, Prov-GigaPath) and CTransPath's published code (Swin-T with a convolutional stem).
"""

from __future__ import annotations

import logging
import os
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
PRETRAINED = "pretrained"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one patch encoder and feed it.

    `builder(spec, pretrained)` returns the model, with random weights unless `pretrained` (then timm
    loads `pretrained_source`). `mean`/`std` (RGB, on the 0–1 scale) of None are taken from timm's
    pretrained configuration of `architecture`. `precision` is the autocast dtype on CUDA
    ("bfloat16", "float16" or "float32"); CPU always runs float32. `channels_last`: feed NHWC batches
    (faster for CNNs on tensor cores). `ignored_weight_prefixes`: checkpoint keys dropped before the
    strict load (parts the encoder cuts off); `checkpoint_filter`: "module:function" of timm that maps
    an original checkpoint onto timm's layout (`function(state_dict, model)`).
    """

    name: str
    architecture: str
    builder: Callable[[EncoderSpec, bool], torch.nn.Module]
    output_dim: int
    input_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    precision: str = "bfloat16"
    channels_last: bool = False
    timm_kwargs: Mapping[str, object] = field(default_factory=dict)
    pretrained_source: str | None = None
    ignored_weight_prefixes: tuple[str, ...] = ()
    checkpoint_filter: str | None = None

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per RGB channel on the 0–1 scale."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        import timm

        config = timm.models.get_pretrained_cfg(self.architecture)
        return tuple(config.mean), tuple(config.std)


def _timm_kwargs(spec: EncoderSpec) -> dict[str, object]:
    """`spec.timm_kwargs` with the named layers resolved to classes (kept as names so import stays light)."""
    import timm.layers
    import torch

    layers = {"swiglu_packed": timm.layers.SwiGLUPacked, "silu": torch.nn.SiLU}
    resolved = dict(spec.timm_kwargs)
    for key in ("mlp_layer", "act_layer"):
        if isinstance(resolved.get(key), str):
            resolved[key] = layers[resolved[key]]
    return resolved


def _build_timm(spec: EncoderSpec, pretrained: bool = False) -> torch.nn.Module:
    """timm model `spec.architecture` (or `spec.pretrained_source` with its weights) without classifier."""
    import timm

    name = spec.pretrained_source if pretrained else spec.architecture
    return timm.create_model(name, pretrained=pretrained, num_classes=0, **_timm_kwargs(spec))


def _build_resnet_truncated(spec: EncoderSpec, pretrained: bool = False) -> torch.nn.Module:
    """timm ResNet cut after layer3, then global average pooling (1024-d for ResNet-50)."""
    import torch

    model = _build_timm(spec, pretrained)
    model.layer4 = torch.nn.Identity()
    model.num_features = spec.output_dim
    return model


def _build_virchow2(spec: EncoderSpec, pretrained: bool = False) -> torch.nn.Module:
    """Virchow2 ViT-H/14: class token concatenated with the mean of the patch tokens (2 × 1280 = 2560-d)."""
    from memamba.features.encoder_layers import ClassAndMeanPatchTokens

    model = _build_timm(spec, pretrained)
    model.head = ClassAndMeanPatchTokens(model.num_prefix_tokens)
    model.num_features = spec.output_dim
    return model


def _build_ctranspath(spec: EncoderSpec, pretrained: bool = False) -> torch.nn.Module:
    """CTransPath: timm Swin-T/4 whose patch embedding is a convolutional stem (768-d)."""
    import timm

    from memamba.features.encoder_layers import ConvStem

    if pretrained:
        raise InputError("ctranspath has no timm download: pass --weights PATH to CTransPath's checkpoint")
    return timm.create_model(spec.architecture, pretrained=False, num_classes=0, embed_layer=ConvStem)


_VIT_GIANT_SWIGLU = {"mlp_layer": "swiglu_packed", "act_layer": "silu", "no_embed_class": True}

_SPECS = (
    EncoderSpec(
        name="resnet50_trunc",
        architecture="resnet50",
        builder=_build_resnet_truncated,
        output_dim=1024,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels_last=True,
        pretrained_source="resnet50.tv_in1k",
        ignored_weight_prefixes=("layer4.", "fc."),
    ),
    EncoderSpec(
        name="uni_vit_large",
        architecture="vit_large_patch16_224",
        builder=_build_timm,
        output_dim=1024,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        timm_kwargs={"init_values": 1e-5, "dynamic_img_size": True},
        pretrained_source="hf-hub:MahmoodLab/UNI",
    ),
    EncoderSpec(
        name="uni2_h",
        architecture="vit_giant_patch14_224",
        builder=_build_timm,
        output_dim=1536,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        timm_kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "reg_tokens": 8,
            "dynamic_img_size": True,
            **_VIT_GIANT_SWIGLU,
        },
        pretrained_source="hf-hub:MahmoodLab/UNI2-h",
    ),
    EncoderSpec(
        name="virchow2",
        architecture="vit_huge_patch14_224",
        builder=_build_virchow2,
        output_dim=2560,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "mlp_ratio": 5.3375,
            "global_pool": "",
            "reg_tokens": 4,
            "dynamic_img_size": True,
            **_VIT_GIANT_SWIGLU,
        },
        pretrained_source="hf-hub:paige-ai/Virchow2",
    ),
    EncoderSpec(
        name="h_optimus_0",
        architecture="vit_giant_patch14_reg4_dinov2",
        builder=_build_timm,
        output_dim=1536,
        mean=(0.707223, 0.578729, 0.703617),
        std=(0.211883, 0.230117, 0.177517),
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
        pretrained_source="hf-hub:bioptimus/H-optimus-0",
    ),
    EncoderSpec(
        name="prov_gigapath",
        architecture="vit_giant_patch14_dinov2",
        builder=_build_timm,
        output_dim=1536,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        timm_kwargs={
            "img_size": 224,
            "in_chans": 3,
            "patch_size": 16,
            "embed_dim": 1536,
            "depth": 40,
            "num_heads": 24,
            "init_values": 1e-5,
            "mlp_ratio": 5.33334,
        },
        pretrained_source="hf-hub:prov-gigapath/prov-gigapath",
    ),
    EncoderSpec(
        name="ctranspath",
        architecture="swin_tiny_patch4_window7_224",
        builder=_build_ctranspath,
        output_dim=768,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        ignored_weight_prefixes=("head.",),
        checkpoint_filter="timm.models.swin_transformer:checkpoint_filter_fn",
    ),
    EncoderSpec(
        name="vit_large_patch16_224",
        architecture="vit_large_patch16_224",
        builder=_build_timm,
        output_dim=1024,
        pretrained_source="vit_large_patch16_224.augreg_in21k_ft_in1k",
        ignored_weight_prefixes=("head.",),
    ),
)
_REGISTRY: dict[str, EncoderSpec] = {spec.name: spec for spec in _SPECS}


def encoder_names() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registered spec called `name`; an unknown name raises InputError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown encoder {name!r}: choose one of {', '.join(encoder_names())}") from None


def build_encoder(
    spec: EncoderSpec, weights: Path | str | None, allow_random_weights: bool
) -> tuple[torch.nn.Module, str]:
    """Build `spec`'s model in eval mode on the CPU; return (model, sha256 of its weights or "random").

    `weights`: a .safetensors or .pth/.pt state dict (loaded strictly; the digest is the file's), or
    "pretrained" (timm download; the digest is that of the loaded state dict). Without weights, random
    weights are used only when `allow_random_weights` (seeded, so reruns give identical features).
    """
    import torch

    from memamba.features.weights import file_sha256, load_weights, state_dict_sha256

    check_weights_choice(spec, weights, allow_random_weights)
    if weights == PRETRAINED:
        model = _download_pretrained(spec)
        return model.eval(), state_dict_sha256(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = spec.builder(spec, False)
    if weights is None:
        logger.warning(
            "encoder %s has RANDOM weights: its features carry no pretrained knowledge "
            "(fine for tests and the demo, meaningless for real cohorts)",
            spec.name,
        )
        return model.eval(), RANDOM_WEIGHTS
    load_weights(model, Path(weights), spec.ignored_weight_prefixes, spec.checkpoint_filter)
    return model.eval(), file_sha256(Path(weights))


def _download_pretrained(spec: EncoderSpec) -> torch.nn.Module:
    """`spec`'s model with the weights timm downloads; offline or failing, an InputError saying what to do."""
    offline = [name for name in _OFFLINE_VARIABLES if os.environ.get(name, "").lower() in ("1", "true", "yes")]
    if spec.pretrained_source is None:
        raise InputError(f"encoder {spec.name} has no download source: pass --weights PATH to its checkpoint")
    if offline:
        raise InputError(
            f"encoder {spec.name}: pretrained weights ({spec.pretrained_source}) need network access but "
            f"{offline[0]} is set: pass --weights PATH to a local copy"
        )
    try:
        return spec.builder(spec, True)
    except Exception as error:
        raise InputError(
            f"encoder {spec.name}: cannot download {spec.pretrained_source} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): check network access and, for gated models, "
            "HF_TOKEN; offline, pass --weights PATH to a local copy"
        ) from None


def check_weights_choice(spec: EncoderSpec, weights: Path | str | None, allow_random_weights: bool) -> None:
    """Raise InputError unless weights are given or random weights are explicitly allowed."""
    if weights is None and not allow_random_weights:
        raise InputError(
            f"no weights for encoder {spec.name}: pass --weights PATH (or --weights pretrained when online) "
            "or --allow-random-weights"
        )
