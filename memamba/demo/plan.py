"""Plan of the demo cohort: patients, slide ids, latent risk and labels, without rendering any image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memamba.demo.survival import draw_survival
from memamba.errors import InputError

MIN_PATIENTS = 4
MAX_PATIENTS = 20_000
TWO_SLIDE_FRACTION = 0.15
SITES: tuple[str, ...] = ("2F", "4Z", "BL", "BT", "C4", "CF", "DK", "E7", "FD", "GC", "K4", "XF", "ZF")
"""Tissue source site codes (the 2 characters after "TCGA-") drawn for demo patients."""

PLAN_STREAM = 0
SURVIVAL_STREAM = 1
OMICS_STREAM = 2
SLIDE_STREAM = 3


@dataclass(frozen=True)
class DemoPatient:
    """One synthetic patient: barcode, slide ids (no extension), planted risk and clinical labels."""

    case_id: str
    slide_ids: tuple[str, ...]
    latent_risk: float
    site: str
    is_female: int
    age: int
    survival_months: float
    censorship: int


def demo_rng(seed: int, *stream: int) -> np.random.Generator:
    """Random generator of one named stream (PLAN_STREAM, …, plus indices) of the demo for `seed`."""
    return np.random.default_rng([seed, *stream])


def check_demo_arguments(n_patients: int, seed: int) -> None:
    """Raise InputError unless MIN_PATIENTS <= n_patients <= MAX_PATIENTS and seed >= 0 (both int)."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, int | np.integer):
        raise InputError(f"n_patients={n_patients!r} is not an integer; pass --patients as a whole number")
    if not MIN_PATIENTS <= n_patients <= MAX_PATIENTS:
        raise InputError(
            f"n_patients={n_patients} is out of range; pass --patients between {MIN_PATIENTS} "
            f"(the fewest for 2-fold cross-validation) and {MAX_PATIENTS}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed={seed!r} is not a non-negative integer; pass --seed 0 or larger")


def case_barcode(site: str, index: int) -> str:
    """12-character TCGA-style patient barcode "TCGA-{site}-{letter}{3 digits}" unique for index 1..25999."""
    return f"TCGA-{site}-{chr(ord('A') + index // 1000)}{index % 1000:03d}"


def plan_demo(n_patients: int, seed: int) -> list[DemoPatient]:
    """Plan the demo cohort for `seed`: pure, deterministic and cheap (no images).

    Latent risk z ~ N(0, 1) per patient; about TWO_SLIDE_FRACTION of patients (at least one) have two
    slides, "{case_id}-01Z-00-DX1" and "-DX2"; survival months and censorship from `draw_survival`.
    """
    check_demo_arguments(n_patients, seed)
    rng = demo_rng(seed, PLAN_STREAM)
    latent_risk = rng.standard_normal(n_patients)
    sites = rng.choice(len(SITES), n_patients)
    is_female = (rng.random(n_patients) < 0.5).astype(int)
    ages = np.clip(np.round(rng.normal(66.0, 10.0, n_patients)), 30, 90).astype(int)
    two_slides = rng.random(n_patients) < TWO_SLIDE_FRACTION
    if not two_slides.any():
        two_slides[rng.integers(n_patients)] = True
    months, censorship = draw_survival(latent_risk, demo_rng(seed, SURVIVAL_STREAM))
    patients = []
    for index in range(n_patients):
        case_id = case_barcode(SITES[sites[index]], index + 1)
        n_slides = 2 if two_slides[index] else 1
        patients.append(
            DemoPatient(
                case_id=case_id,
                slide_ids=tuple(f"{case_id}-01Z-00-DX{k + 1}" for k in range(n_slides)),
                latent_risk=float(latent_risk[index]),
                site=SITES[sites[index]],
                is_female=int(is_female[index]),
                age=int(ages[index]),
                survival_months=float(months[index]),
                censorship=int(censorship[index]),
            )
        )
    return patients
