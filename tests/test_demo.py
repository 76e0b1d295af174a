"""Tests of the synthetic planted-signal demo cohort (plan, labels, genomics table, rendering, Aperio SVS)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from memamba.demo.cohort import write_demo_cohort
from memamba.demo.genomics import (
    CLINICAL_COLUMNS,
    SIGNAL_GROUPS,
    demo_genes,
    genomics_table,
    write_genomics_csv,
)
from memamba.demo.plan import plan_demo
from memamba.demo.render import nucleus_style, render_tissue
from memamba.demo.svs import pyramid_sizes, write_aperio_svs
from memamba.errors import InputError

SMALL_SLIDE = (1024, 768)
N_SMALL = 5
SEED = 3


def concordance(risk: np.ndarray, months: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C: among comparable pairs (the shorter time is an event), the share ordered by risk."""
    concordant = comparable = 0.0
    for i in np.flatnonzero(event):
        later = months > months[i]
        comparable += later.sum()
        concordant += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return concordant / comparable


def labels(n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    patients = plan_demo(n_patients, seed)
    return (
        np.array([p.latent_risk for p in patients]),
        np.array([p.survival_months for p in patients]),
        np.array([p.censorship for p in patients]),
    )


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_cohort(tmp_path_factory.mktemp("demo"), N_SMALL, SEED, slide_size=SMALL_SLIDE)


def test_plan_demo_is_deterministic_for_a_seed() -> None:
    assert plan_demo(30, 5) == plan_demo(30, 5)
    assert plan_demo(30, 5) != plan_demo(30, 6)


def test_plan_demo_takes_milliseconds() -> None:
    started = time.perf_counter()
    plan_demo(200, 0)
    assert time.perf_counter() - started < 0.5


def test_case_ids_are_unique_twelve_character_tcga_barcodes() -> None:
    patients = plan_demo(200, 1)
    case_ids = [p.case_id for p in patients]
    assert all(re.fullmatch(r"TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}", case_id) for case_id in case_ids)
    assert len(set(case_ids)) == len(case_ids)


def test_slide_ids_extend_the_case_id_without_extension() -> None:
    for patient in plan_demo(50, 2):
        for k, slide_id in enumerate(patient.slide_ids, start=1):
            assert slide_id == f"{patient.case_id}-01Z-00-DX{k}"


def test_some_patients_have_two_slides() -> None:
    assert all(any(len(p.slide_ids) == 2 for p in plan_demo(4, seed)) for seed in range(20))
    fraction = np.mean([len(p.slide_ids) == 2 for p in plan_demo(400, 0)])
    assert 0.08 < fraction < 0.25


def test_written_files_match_the_plan(cohort_dir: Path) -> None:
    patients = plan_demo(N_SMALL, SEED)
    slide_ids = {s for p in patients for s in p.slide_ids}
    assert {path.stem for path in (cohort_dir / "slides").glob("*.svs")} == slide_ids
    table = pd.read_csv(cohort_dir / "genomics.csv", index_col=0)
    assert set(table["slide_id"]) == {f"{s}.svs" for s in slide_ids}
    risks = pd.read_csv(cohort_dir / "latent_risk.csv")
    assert list(risks["case_id"]) == [p.case_id for p in patients]
    assert np.allclose(risks["latent_risk"], [p.latent_risk for p in patients], atol=1e-6)


def test_demo_slide_opens_as_aperio_with_magnification_mpp_and_pyramid(cohort_dir: Path) -> None:
    import openslide

    slide = openslide.OpenSlide(next((cohort_dir / "slides").glob("*.svs")))
    assert slide.properties["openslide.vendor"] == "aperio"
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(slide.properties["openslide.objective-power"]) == 40
    assert slide.level_count >= 2
    assert slide.level_dimensions[0] == SMALL_SLIDE


def test_demo_slide_shows_tissue_blobs_on_white_glass(cohort_dir: Path) -> None:
    import cv2
    import openslide

    slide = openslide.OpenSlide(next((cohort_dir / "slides").glob("*.svs")))
    rgb = np.asarray(slide.read_region((0, 0), 0, slide.level_dimensions[0]).convert("RGB"))
    tissue = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1] > 20
    assert 0.3 < tissue.mean() < 0.65
    assert rgb[~tissue].mean() > 235
    tissue_rgb = rgb[tissue].astype(float).mean(axis=0)
    assert tissue_rgb[1] < tissue_rgb[0] and tissue_rgb[1] < tissue_rgb[2]


def test_write_aperio_svs_returns_the_colours_at_every_level(tmp_path: Path) -> None:
    import openslide

    rgb = np.full((1536, 2048, 3), 242, dtype=np.uint8)
    rgb[256:768, 256:1024] = (214, 122, 170)
    rgb[768:1280, 1024:1792] = (70, 40, 120)
    write_aperio_svs(tmp_path / "s.svs", rgb, mpp=0.25, app_mag=40)
    slide = openslide.OpenSlide(tmp_path / "s.svs")
    for level, downsample in enumerate(slide.level_downsamples):
        for (x, y), colour in (((512, 512), (214, 122, 170)), ((1400, 1000), (70, 40, 120))):
            size = max(1, int(64 / downsample))
            patch = np.asarray(slide.read_region((x, y), level, (size, size)).convert("RGB"))
            assert np.abs(patch.reshape(-1, 3).mean(axis=0) - colour).max() < 6, (level, colour)


def test_pyramid_downsamples_by_four_down_to_min_level_size() -> None:
    assert pyramid_sizes(4096, 3072, 512) == [(4096, 3072), (1024, 768), (256, 192)]
    assert pyramid_sizes(1024, 768, 512) == [(1024, 768), (256, 192)]


def test_genomics_csv_has_the_mcat_layout(cohort_dir: Path) -> None:
    raw = pd.read_csv(cohort_dir / "genomics.csv")
    assert raw.columns[0] == "Unnamed: 0"
    assert tuple(raw.columns[1:10]) == CLINICAL_COLUMNS
    omic = raw.columns[10:]
    assert all(re.fullmatch(r"[A-Za-z0-9.\-]+_(rnaseq|cnv|mut)", name) for name in omic)
    assert set(raw["oncotree_code"]) == {"DEMO"}
    assert (raw["site"] == raw["case_id"].str[5:7]).all()
    assert set(raw["censorship"]) <= {0, 1} and (raw["survival_months"] > 0).all()


def test_slides_of_one_patient_share_labels_and_omics(cohort_dir: Path) -> None:
    table = pd.read_csv(cohort_dir / "genomics.csv", index_col=0)
    repeated = table[table["case_id"].duplicated(keep=False)]
    assert len(repeated) >= 2
    for _, rows in repeated.groupby("case_id"):
        assert len(rows.drop(columns="slide_id").drop_duplicates()) == 1


def test_same_seed_gives_identical_files_and_another_seed_other_omics(cohort_dir: Path, tmp_path: Path) -> None:
    again = write_demo_cohort(tmp_path / "again", N_SMALL, SEED, slide_size=SMALL_SLIDE)
    assert (again / "genomics.csv").read_bytes() == (cohort_dir / "genomics.csv").read_bytes()
    for path in (cohort_dir / "slides").glob("*.svs"):
        assert (again / "slides" / path.name).read_bytes() == path.read_bytes()
    write_genomics_csv(tmp_path / "other.csv", plan_demo(N_SMALL, SEED + 1), SEED + 1, demo_genes())
    assert (tmp_path / "other.csv").read_bytes() != (cohort_dir / "genomics.csv").read_bytes()


def test_about_thirty_percent_of_patients_are_censored() -> None:
    for seed in range(5):
        _, _, censorship = labels(200, seed)
        assert 0.2 <= censorship.mean() <= 0.4


def test_survival_is_concordant_with_latent_risk() -> None:
    risk, months, censorship = labels(200, 0)
    assert concordance(risk, months, 1 - censorship) > 0.7


def test_signal_groups_track_latent_risk_and_noise_groups_do_not() -> None:
    patients = plan_demo(200, 0)
    risk = np.array([p.latent_risk for p in patients])
    genes_by_group = demo_genes()
    table = genomics_table(patients, 0, genes_by_group).drop_duplicates("case_id")
    for group, genes in genes_by_group.items():
        rho = np.median([abs(spearmanr(risk, table[f"{gene}_rnaseq"]).statistic) for gene in genes])
        if group in SIGNAL_GROUPS:
            assert rho > 0.5, group
        else:
            assert rho < 0.2, group


def test_nucleus_style_grows_with_latent_risk() -> None:
    low, high = nucleus_style(-1.0), nucleus_style(1.0)
    assert all(getattr(high, field) > getattr(low, field) for field in low.__dataclass_fields__)


def test_high_risk_tissue_has_more_and_darker_nuclei() -> None:
    def tissue_stats(latent_risk: float) -> tuple[float, float]:
        rgb = render_tissue(512, 512, latent_risk, np.random.default_rng(7), mpp=0.5).astype(float)
        optical_density = -np.log((rgb + 1.0) / 256.0).sum(axis=2)
        tissue = optical_density > 0.3
        return float(optical_density[tissue].mean()), float((rgb[..., 0] < 140)[tissue].mean())

    low_darkness, low_nuclei = tissue_stats(-1.5)
    high_darkness, high_nuclei = tissue_stats(1.5)
    assert high_darkness > low_darkness
    assert high_nuclei > 2 * low_nuclei


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_patients": 3, "seed": 0}, "n_patients"),
        ({"n_patients": 4.5, "seed": 0}, "n_patients"),
        ({"n_patients": 10, "seed": -1}, "seed"),
        ({"n_patients": 10, "seed": 0, "slide_size": (100, 100)}, "slide_size"),
        ({"n_patients": 10, "seed": 0, "genes_per_group": 1000}, "genes_per_group"),
    ],
)
def test_bad_arguments_raise_input_error_naming_them(kwargs: dict, argument: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=argument):
        write_demo_cohort(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
