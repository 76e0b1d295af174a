"""Encoder weight files: read a local state dict, map its keys onto the model, load strictly, hash it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from memamba.errors import InputError

_SAFETENSORS_SUFFIXES = (".safetensors",)
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_WRAPPER_KEYS = ("state_dict", "model")
_KEY_PREFIXES = ("module.", "model.", "backbone.")
_SHOWN_KEYS = 5


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes; a missing file raises InputError."""
    if not path.is_file():
        raise InputError(f"{path}: weights file not found: pass an existing --weights PATH")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pth/.pt/.bin file, unwrapped from a training checkpoint if needed."""
    if not path.is_file():
        raise InputError(f"{path}: weights file not found: pass an existing --weights PATH")
    suffix = path.suffix.lower()
    try:
        if suffix in _SAFETENSORS_SUFFIXES:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in _TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise InputError(f"{path}: unknown weights format {suffix!r}: give a .safetensors or .pth/.pt state dict")
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{path}: cannot read weights ({error}): give a valid state dict file") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors: save model.state_dict() instead")
    return state


def map_state_dict(
    state: dict[str, torch.Tensor], model: torch.nn.Module, ignored_prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (DataParallel `module.` …) unknown to the model, drop ignored keys,
    and fill BatchNorm `num_batches_tracked` counters that older checkpoints lack."""
    expected = model.state_dict()
    mapped = {}
    for key, tensor in state.items():
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix) and key not in expected:
                key = key[len(prefix) :]
        if not key.startswith(ignored_prefixes):
            mapped[key] = tensor
    for key, tensor in expected.items():
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = tensor
    return mapped


def state_dict_sha256(model: torch.nn.Module) -> str:
    """Hex sha256 over the names, dtypes, shapes and bytes of `model`'s state dict (weights not read from a file)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_weights(
    model: torch.nn.Module,
    path: Path,
    ignored_prefixes: tuple[str, ...] = (),
    checkpoint_filter: str | None = None,
) -> None:
    """Load the state dict in `path` into `model` strictly; mismatches raise InputError naming `path`.

    `checkpoint_filter` ("module:function", `function(state_dict, model) -> state_dict`) first maps an
    original checkpoint layout onto the model's (e.g. timm's Swin filter for CTransPath).
    """
    mapped = map_state_dict(read_state_dict(path), model, ignored_prefixes)
    if checkpoint_filter is not None:
        import importlib

        module_name, function_name = checkpoint_filter.split(":")
        mapped = dict(getattr(importlib.import_module(module_name), function_name)(mapped, model))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    reshaped = sorted(key for key in set(mapped) & set(expected) if mapped[key].shape != expected[key].shape)
    problems = [
        f"{label} {len(keys)} keys (e.g. {', '.join(keys[:_SHOWN_KEYS])})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape for", reshaped))
        if keys
    ]
    if problems:
        raise InputError(
            f"{path}: weights do not match the encoder: {'; '.join(problems)}: "
            "pass the weights of this encoder or pick the --encoder they belong to"
        )
    model.load_state_dict(mapped, strict=True)
