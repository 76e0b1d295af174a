"""The real Snakemake workflow: lint-clean, the full DAG in a dry run, and a tiny end-to-end run on CPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml
from PIL import Image

from memamba.demo.plan import plan_demo

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "tests" / "data" / "workflow" / "tiny.yaml"
TINY = yaml.safe_load(TINY_CONFIG.read_text())
TINY_SLIDES = sum(
    len(patient.slide_ids) for patient in plan_demo(TINY["cohorts"]["tiny"]["demo"]["patients"], 3)
)


def snakemake(
    out_dir: Path, *args: str, timeout: int = 600, config: Path = TINY_CONFIG
) -> subprocess.CompletedProcess[str]:
    """Run the repository's workflow on the tiny config (or `config`) with its outputs under `out_dir`."""
    command = [
        sys.executable, "-m", "snakemake", "--cores", "2",
        "--configfile", str(config), "--config", f"output_dir={out_dir}", *args,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule name -> job count from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:", 1)[1]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def test_lint_reports_nothing(tmp_path: Path) -> None:
    result = snakemake(tmp_path / "out", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_dry_run_shows_the_full_dag(tmp_path: Path) -> None:
    result = snakemake(tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    folds, models = TINY["genomics"]["n_folds"], len(TINY["models"])
    assert counts == {
        "demo_tiny": 1, "tile": TINY_SLIDES, "tile_manifest": 1, "features": TINY_SLIDES, "genomics": 1,
        "train": folds * models, "evaluate": models, "summary_table": 1, "resolved_config": 1, "report": 1,
        "all": 1, "total": sum((1, 2 * TINY_SLIDES, 1, 1, folds * models, models, 1, 1, 1, 1)),
    }


def test_invalid_config_is_rejected_before_any_job(tmp_path: Path) -> None:
    result = snakemake(tmp_path / "out", "--dry-run", "--config", "train={'epochs': 0}")
    assert result.returncode != 0
    assert "epochs" in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_feature_group_jobs_take_the_resources_a_profile_sets_for_features(tmp_path: Path) -> None:
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text(yaml.safe_dump({**TINY, "features": {**TINY["features"], "slides_per_job": 4}}))
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("set-resources:\n  features:\n    mem_mb: 32000\n    runtime: 240\n")
    result = snakemake(tmp_path / "out", "--profile", str(profile), "--dry-run", "--", "features_all", config=grouped)
    assert result.returncode == 0, result.stderr
    group_jobs = result.stdout.split("rule features_group_")[1:]
    assert len(group_jobs) == -(-TINY_SLIDES // 4)
    for job in group_jobs:
        resources = next(line for line in job.splitlines() if "resources:" in line)
        assert "mem_mb=32000" in resources and "runtime=240" in resources


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("tiny") / "results"
    result = snakemake(out_dir, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out_dir


class _HtmlChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1


def parse_output(path: Path) -> None:
    """Open `path` with the reader of its format; raise if it does not parse."""
    suffix = path.suffix
    if suffix == ".h5":
        with h5py.File(path, "r") as handle:
            assert len(handle.keys()) > 0
    elif suffix in (".csv", ".tsv"):
        assert len(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",").columns) > 0
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".parquet":
        assert len(pd.read_parquet(path)) > 0
    elif suffix == ".png":
        with Image.open(path) as image:
            image.verify()
    elif suffix == ".svg":
        ElementTree.parse(path)
    elif suffix == ".html":
        checker = _HtmlChecker()
        checker.feed(path.read_text())
        assert checker.tags["table"] > 0
    elif suffix == ".pt":
        import torch

        torch.load(path, map_location="cpu", weights_only=False)
    elif suffix == ".svs":
        import openslide

        with openslide.OpenSlide(path) as slide:
            assert slide.properties["openslide.vendor"] == "aperio"
    elif suffix == ".yaml":
        assert isinstance(yaml.safe_load(path.read_text()), dict)
    else:
        raise AssertionError(f"no parser for {path}")


@pytest.mark.slow
def test_every_declared_output_exists_and_parses(finished_run: Path) -> None:
    summary = snakemake(finished_run, "--summary")
    assert summary.returncode == 0, summary.stderr
    rows = [line.split("\t") for line in summary.stdout.splitlines() if line.startswith(str(finished_run))]
    outputs = [Path(row[0]) for row in rows]
    assert len(outputs) >= 4 * TINY_SLIDES
    missing = [path for path in outputs if not path.exists()]
    assert missing == []
    for path in outputs:
        parse_output(path)


@pytest.mark.slow
def test_summary_table_has_a_c_index_per_fold_and_their_mean(finished_run: Path) -> None:
    table = pd.read_csv(finished_run / "summary.csv")
    assert {"cohort", "model", "metric", "mean", "sd", "n_folds"} <= set(table.columns)
    folds = TINY["genomics"]["n_folds"]
    for model in TINY["models"]:
        row = table[(table.cohort == "tiny") & (table.model == model) & (table.metric == "c_index")]
        assert len(row) == 1
        per_fold = [row[f"fold_{k}"].item() for k in range(folds)]
        assert row["n_folds"].item() == folds
        assert row["mean"].item() == pytest.approx(sum(per_fold) / folds)
        assert all(0.0 <= value <= 1.0 for value in per_fold)


@pytest.mark.slow
def test_finished_workflow_has_nothing_left_to_do(finished_run: Path) -> None:
    result = snakemake(finished_run, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_slides_grouped_into_jobs_build_the_encoder_once_a_job_and_give_the_same_features(
    finished_run: Path, tmp_path: Path
) -> None:
    per_job = 4
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text(yaml.safe_dump({**TINY, "features": {**TINY["features"], "slides_per_job": per_job}}))
    out_dir = tmp_path / "results"
    dry = snakemake(out_dir, "--dry-run", "--", "features_all", config=grouped)
    assert dry.returncode == 0, dry.stderr
    groups = -(-TINY_SLIDES // per_job)
    counts = job_counts(dry.stdout)
    assert "features" not in counts and [counts[f"features_group_{n}"] for n in range(groups)] == [1] * groups
    result = snakemake(out_dir, "--", "features_all", config=grouped, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    logs = sorted((out_dir / "logs" / "features" / "tiny" / TINY["features"]["encoder"]).glob("group_*.log"))
    assert len(logs) == groups and all(log.read_text().count("RANDOM weights") == 1 for log in logs)
    single = sorted((finished_run / "features" / "tiny" / TINY["features"]["encoder"]).glob("*.h5"))
    assert len(single) == TINY_SLIDES
    for path in single:
        with h5py.File(path, "r") as one, h5py.File(out_dir / path.relative_to(finished_run), "r") as batched:
            assert batched.attrs["status"] == one.attrs["status"]
            assert (batched["features"][()] == one["features"][()]).all()
