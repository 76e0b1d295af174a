"""Per-stage reruns on one finished tiny run: what a config change replans, read from Snakemake's dry-run plan."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from test_workflow import TINY, TINY_SLIDES, job_counts

ROOT = Path(__file__).resolve().parents[1]
FOLDS = TINY["genomics"]["n_folds"]
STAGE_TARGETS = ("tiles_all", "features_all", "genomics_all", "train_all", "report_all")


def snakemake(config: dict, tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the repository's workflow with `config` (written beside the run) and extra arguments."""
    text = yaml.safe_dump(config)
    config_file = tmp_path / f"config_{hashlib.sha1(text.encode()).hexdigest()[:12]}.yaml"
    config_file.write_text(text)
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(config_file), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def planned_jobs(config: dict, tmp_path: Path, *targets: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (empty when nothing is to be done)."""
    result = snakemake(config, tmp_path, "--dry-run", *targets)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if "Nothing to be done" in result.stdout + result.stderr:
        return {}
    counts = job_counts(result.stdout)
    counts.pop("total")
    return counts


class Finished(NamedTuple):
    config: dict
    folder: Path
    rules_run: set[str]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The tiny workflow run to the end once: its config, a folder for further configs, the rules it ran."""
    folder = tmp_path_factory.mktemp("reruns")
    config = {**copy.deepcopy(TINY), "output_dir": str(folder / "results")}
    rules_run = set(planned_jobs(config, folder))
    result = snakemake(config, folder, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return Finished(config, folder, rules_run)


@pytest.mark.slow
def test_changing_nothing_reruns_nothing(finished: Finished) -> None:
    assert planned_jobs(finished.config, finished.folder) == {}


@pytest.mark.slow
@pytest.mark.parametrize("target", STAGE_TARGETS)
def test_stage_target_after_a_full_run_redoes_no_job_of_that_run(finished: Finished, target: str) -> None:
    planned = planned_jobs(finished.config, finished.folder, target)
    assert {rule: count for rule, count in planned.items() if rule in finished.rules_run} == {}


@pytest.mark.slow
def test_new_encoder_reruns_features_and_everything_downstream(finished: Finished) -> None:
    config, folder = finished.config, finished.folder
    changed = copy.deepcopy(config)
    changed["features"]["encoder"] = "uni_vit_large"
    models = len(config["models"])
    assert planned_jobs(changed, folder) == {
        "features": TINY_SLIDES, "train": FOLDS * models, "evaluate": models, "summary_table": 1,
        "resolved_config": 1, "report": 1, "all": 1,
    }


@pytest.mark.slow
def test_features_target_plans_only_the_features_stage_for_a_new_encoder(finished: Finished) -> None:
    changed = copy.deepcopy(finished.config)
    changed["features"]["encoder"] = "uni_vit_large"
    planned = planned_jobs(changed, finished.folder, "features_all")
    assert planned["features"] == TINY_SLIDES
    assert {rule: count for rule, count in planned.items() if not rule.startswith("features")} == {}


@pytest.mark.slow
def test_model_hyperparameter_reruns_only_that_models_training_and_evaluation(finished: Finished) -> None:
    config, folder = finished.config, finished.folder
    changed = copy.deepcopy(config)
    changed["models"]["memamba"]["d_model"] = 2 * config["models"]["memamba"]["d_model"]
    result = snakemake(changed, folder, "--dry-run")
    assert job_counts(result.stdout) == {
        "train": FOLDS, "evaluate": 1, "summary_table": 1, "resolved_config": 1, "report": 1, "all": 1,
        "total": FOLDS + 5,
    }
    assert "model=snn" not in result.stdout
