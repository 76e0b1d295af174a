"""The one entry point that builds a survival model by name (torch is imported only when building)."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from memamba.errors import InputError

if TYPE_CHECKING:
    from torch import nn

_MODELS = {
    "memamba": ("memamba.models.memamba", "MEMamba"),
    "snn": ("memamba.models.baselines", "SNN"),
    "abmil": ("memamba.models.baselines", "ABMIL"),
    "mcat": ("memamba.models.coattention", "MCAT"),
    "motcat": ("memamba.models.coattention", "MOTCat"),
}
MODEL_NAMES = tuple(_MODELS)
_DATA_ARGS = ("feature_dim", "group_sizes", "n_bins")


def model_parameters(name: str) -> dict[str, Any]:
    """The tunable parameters of a model and their defaults (everything but the data-derived inputs)."""
    signature = inspect.signature(_model_class(name))
    return {key: p.default for key, p in signature.parameters.items() if key not in _DATA_ARGS}


def build_model(
    name: str, *, feature_dim: int, group_sizes: list[int] | tuple[int, ...], n_bins: int = 4, **params: Any
) -> nn.Module:
    """A new model: name in MODEL_NAMES; feature_dim: D of the patch features; group_sizes: g_i of the
    genomic groups; params: the model's tunable parameters (see model_parameters).

    Raises InputError for an unknown name, an unknown parameter or an invalid parameter value.
    """
    valid = model_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for model {name!r} in the model parameters; "
            f"valid parameters: {', '.join(valid)}"
        )
    model_class = _model_class(name)
    data = {"feature_dim": feature_dim, "group_sizes": tuple(group_sizes), "n_bins": n_bins}
    accepted = inspect.signature(model_class).parameters
    try:
        return model_class(**{key: value for key, value in data.items() if key in accepted}, **params)
    except ValueError as error:
        raise InputError(f"invalid parameters for model {name!r}: {error}") from error


def _model_class(name: str) -> type:
    """Import the class behind a model name; InputError naming the valid names when unknown."""
    if name not in _MODELS:
        raise InputError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    module, class_name = _MODELS[name]
    return getattr(importlib.import_module(module), class_name)
