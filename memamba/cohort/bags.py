"""Patient bags: every input of one patient (all slides' patch features and genomic groups) and its label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class PatientBag:
    """One patient, ready for a survival model.

    features: float32 [N, D], the patches of all the patient's slides (N may be 0 for genomics-only runs).
    coords: int64 [N, 2], level-0 (x, y) of each patch on a patient canvas: slides in slide order, each
        shifted below the previous ones (`stack_slide_coords`), so spatial scans do not mix slides.
    genomics: one float32 vector [g_i] per genomic group, scaled with the training fold's scaler.
    time_bin: discrete survival interval (0 … n_bins-1) from the training fold's bin edges.
    survival_months: follow-up time in months; censorship: 1 = censored, 0 = event (MCAT convention).
    """

    case_id: str
    features: torch.Tensor
    coords: torch.Tensor
    genomics: list[torch.Tensor]
    time_bin: int
    survival_months: float
    censorship: int
