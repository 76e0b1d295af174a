"""The workflow builds cohorts from tables as users download them (cBioPortal clinical table + matrices)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from test_genomics_raw import blca_subset, write_raw_cohort

ROOT = Path(__file__).resolve().parents[1]


def raw_cohort_config(tmp_path: Path, *, with_slides: bool) -> Path:
    files = write_raw_cohort(tmp_path / "raw", blca_subset(12))
    cohort = {"clinical": str(files["clinical"]), "expression": str(files["expression"]), "cnv": str(files["cnv"])}
    if with_slides:
        cohort["slides_dir"] = str(files["slides"])
    groups = tmp_path / "groups.gmt"
    groups.write_text("first\tna\tTP53\tRB1\tPTEN\nsecond\tna\tEGFR\tERBB2\n")
    config = {
        "output_dir": str(tmp_path / "out"),
        "cohorts": {"blca_raw": cohort},
        "genomics": {"n_folds": 3, "endpoint": "os", "groups": str(groups)},
        "models": {"snn": {}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", str(config)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_raw_cohort_builds_one_row_per_patient_through_the_workflow(tmp_path: Path) -> None:
    config = raw_cohort_config(tmp_path, with_slides=True)
    result = snakemake(config, "genomics_all")
    assert result.returncode == 0, result.stderr[-3000:]
    patients = pd.read_parquet(tmp_path / "out" / "cohorts" / "blca_raw" / "patients.parquet")
    assert len(patients) == 12
    assert patients["slide_ids"].str.len().gt(0).all()


def test_raw_cohort_slides_are_the_files_of_its_slides_dir(tmp_path: Path) -> None:
    config = raw_cohort_config(tmp_path, with_slides=True)
    result = snakemake(config, "--dry-run", "tiles_all")
    assert result.returncode == 0, result.stderr[-3000:]
    n_files = len(list((tmp_path / "raw" / "slides").glob("*.svs")))
    tile_jobs = [line for line in result.stdout.splitlines() if line.split()[:1] == ["tile"]]
    assert tile_jobs and int(tile_jobs[0].split()[1]) == n_files


def test_raw_cohort_without_slides_plans_no_tiling(tmp_path: Path) -> None:
    config = raw_cohort_config(tmp_path, with_slides=False)
    result = snakemake(config, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    job_rules = {line.split()[0] for line in result.stdout.split("Job stats:", 1)[1].splitlines()[3:] if line.strip()}
    assert "genomics" in job_rules and "train" in job_rules
    assert "tile" not in job_rules and "features" not in job_rules


def test_expression_transform_of_a_raw_cohort_reaches_the_genomics_job(tmp_path: Path) -> None:
    config = raw_cohort_config(tmp_path, with_slides=False)
    settings = yaml.safe_load(config.read_text())
    settings["cohorts"]["blca_raw"]["expression_transform"] = "log2p1"
    config.write_text(yaml.safe_dump(settings))
    result = snakemake(config, "--dry-run", "--printshellcmds", "genomics_all")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--expression-transform log2p1" in result.stdout
    settings["cohorts"]["blca_raw"]["expression_transform"] = "log10"
    config.write_text(yaml.safe_dump(settings))
    refused = snakemake(config, "--dry-run", "genomics_all")
    assert refused.returncode != 0 and "log10" in refused.stdout + refused.stderr
