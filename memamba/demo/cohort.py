"""Write the synthetic planted-signal demo cohort: Aperio slides, MCAT genomics table, latent risks."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from memamba.demo.genomics import demo_genes, write_genomics_csv
from memamba.demo.plan import SLIDE_STREAM, DemoPatient, check_demo_arguments, demo_rng, plan_demo
from memamba.demo.render import render_slide
from memamba.demo.svs import write_aperio_svs
from memamba.errors import InputError
from memamba.io import atomic_output

logger = logging.getLogger(__name__)

LEVEL0_MPP = 0.25
"""µm/px of level 0 (an Aperio 40× scan)."""
APP_MAG = 40
DEFAULT_SLIDE_SIZE = (4096, 3072)
"""Level-0 (width, height) px: 1024 × 768 µm, about 20-40 tissue patches of 256 px at 0.5 µm/px."""
MIN_SLIDE_SIDE = 256


def check_slide_size(slide_size: tuple[int, int]) -> None:
    """Raise InputError unless slide_size is two integers (width, height) px, each >= MIN_SLIDE_SIDE."""
    if len(slide_size) != 2 or not all(isinstance(side, int) and side >= MIN_SLIDE_SIDE for side in slide_size):
        raise InputError(
            f"slide_size={slide_size!r} is not (width, height) in pixels; pass two integers of at least "
            f"{MIN_SLIDE_SIDE}"
        )


def write_slides(
    slides_dir: Path, patients: list[DemoPatient], seed: int, slide_size: tuple[int, int]
) -> None:
    """Render and write `slides_dir/{slide_id}.svs` for every slide of `patients` (level 0 at 0.25 µm/px)."""
    width, height = slide_size
    for patient_index, patient in enumerate(patients):
        for slide_index, slide_id in enumerate(patient.slide_ids):
            rng = demo_rng(seed, SLIDE_STREAM, patient_index, slide_index)
            rgb = render_slide(width, height, patient.latent_risk, rng, level0_mpp=LEVEL0_MPP)
            write_aperio_svs(
                slides_dir / f"{slide_id}.svs",
                rgb,
                mpp=LEVEL0_MPP,
                app_mag=APP_MAG,
                properties={"Filename": slide_id, "Comment": "memamba synthetic demo slide"},
            )
            logger.debug("wrote %s.svs", slide_id)


def write_latent_risk_csv(path: Path, patients: list[DemoPatient]) -> None:
    """Write `case_id, latent_risk` (one row per patient, the planted z) to `path`."""
    import pandas as pd

    table = pd.DataFrame(
        {"case_id": [p.case_id for p in patients], "latent_risk": [round(p.latent_risk, 6) for p in patients]}
    )
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=False)


def write_demo_cohort(
    out_dir: Path,
    n_patients: int,
    seed: int,
    *,
    slide_size: tuple[int, int] = DEFAULT_SLIDE_SIZE,
    genes_per_group: int = 24,
) -> Path:
    """Write the demo cohort of `plan_demo(n_patients, seed)` under `out_dir` and return `out_dir`.

    Files: `slides/{slide_id}.svs` (Aperio, level 0 of `slide_size` px at 0.25 µm/px, AppMag 40),
    `genomics.csv` (MCAT format, one row per slide) and `latent_risk.csv` (case_id, latent_risk).
    The same arguments give byte-identical files.
    """
    check_demo_arguments(n_patients, seed)
    check_slide_size(slide_size)
    genes_by_group = demo_genes(genes_per_group)
    out_dir = Path(out_dir)
    patients = plan_demo(n_patients, seed)
    started = time.perf_counter()
    write_slides(out_dir / "slides", patients, seed, slide_size)
    write_latent_risk_csv(out_dir / "latent_risk.csv", patients)
    write_genomics_csv(out_dir / "genomics.csv", patients, seed, genes_by_group)
    n_slides = sum(len(p.slide_ids) for p in patients)
    logger.info(
        "demo cohort: %d patients, %d slides written to %s in %.1f s",
        n_patients, n_slides, out_dir, time.perf_counter() - started,
    )
    return out_dir
