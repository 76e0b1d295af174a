"""Model entries of the workflow config (`models:`): model type, model parameters, per-entry train settings.

An entry's name is free (it names runs/{cohort}/{name}); `model` picks the model type (default: the
name), `train` overrides the config's `train:` section for that entry, every other key is a model parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ENTRY_KEYS = ("model", "train")
EVALUATION_KEYS = ("uno_tau", "time_grid", "time_grid_quantiles")


def model_type(models: Mapping[str, Mapping[str, Any]], name: str) -> str:
    """The model type of entry `name`."""
    return models[name].get("model", name)


def model_params(models: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, Any]:
    """The model parameters of entry `name` (its keys other than `model` and `train`)."""
    return {key: value for key, value in models[name].items() if key not in ENTRY_KEYS}


def train_params(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`train:` with the entry's overrides, without the device (given to `memamba train` separately)."""
    settings = {**config["train"], **config["models"][name].get("train", {})}
    return {key: value for key, value in settings.items() if key != "device"}


def evaluation_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `evaluate:` that the train job's held-out metrics use."""
    return {key: config["evaluate"][key] for key in EVALUATION_KEYS}


def km_stems(schemes: Sequence[str]) -> list[str]:
    """KM figure stems of the risk-group schemes: km (median split), km_{scheme} otherwise."""
    return ["km" if scheme == "median" else f"km_{scheme}" for scheme in schemes]
