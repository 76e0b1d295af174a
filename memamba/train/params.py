"""Training parameters: defaults (the MCAT/MOTCat protocol) and validation of a user's dictionary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from memamba.errors import InputError

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class TrainParams:
    """How one fold is trained.

    epochs: fixed schedule; held-out predictions are taken after the last epoch (no best-epoch selection).
    lr, weight_decay: optimiser settings; optimizer: "adam" or "adamw".
    grad_accum: bags (patients) per optimiser update; one bag per step, a last partial group at epoch end.
    alpha: weight of the uncensored NLL term (MCAT's alpha_surv).
    n_bins: discrete time bins, fitted on the training fold.
    max_patches: seeded random cap on patches per bag during training (spatial order kept); None = all.
    seed: seeds model initialisation, shuffling and patch caps.
    early_stopping: off by default. When on, the epoch count is chosen on an inner validation split of the
        training patients (`inner_val_fraction` of them, stratified by event, seeded): training stops after
        `patience` epochs without a lower inner-validation NLL, at most `epochs`; the model is then retrained
        on all training patients for the chosen count. The held-out fold is never used for it.
    """

    epochs: int = 20
    lr: float = 2e-4
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    grad_accum: int = 32
    alpha: float = 0.0
    n_bins: int = 4
    max_patches: int | None = None
    seed: int = 0
    early_stopping: bool = False
    inner_val_fraction: float = 0.2
    patience: int = 5

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> TrainParams:
        """Defaults overridden by `params`; an unknown key or an out-of-range value raises InputError."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(
                f"train_params: unknown key(s) {unknown}; known keys are {sorted(known)} "
                "(the device is given separately, e.g. --device)"
            )
        resolved = cls(**params)
        resolved._check()
        return resolved

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-ready)."""
        return asdict(self)

    def _check(self) -> None:
        checks = [
            ("epochs", _is_int(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            ("lr", _is_number(self.lr) and self.lr > 0, "a number > 0"),
            ("weight_decay", _is_number(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {list(OPTIMIZERS)}"),
            ("grad_accum", _is_int(self.grad_accum) and self.grad_accum >= 1, "an integer >= 1"),
            ("alpha", _is_number(self.alpha) and 0 <= self.alpha <= 1, "a number in [0, 1]"),
            ("n_bins", _is_int(self.n_bins) and self.n_bins >= 2, "an integer >= 2"),
            (
                "max_patches",
                self.max_patches is None or (_is_int(self.max_patches) and self.max_patches >= 1),
                "null or an integer >= 1",
            ),
            ("seed", _is_int(self.seed) and self.seed >= 0, "an integer >= 0"),
            ("early_stopping", isinstance(self.early_stopping, bool), "true or false"),
            (
                "inner_val_fraction",
                _is_number(self.inner_val_fraction) and 0 < self.inner_val_fraction < 1,
                "a number in (0, 1)",
            ),
            ("patience", _is_int(self.patience) and self.patience >= 1, "an integer >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InputError(f"train_params: {name}={getattr(self, name)!r} must be {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
