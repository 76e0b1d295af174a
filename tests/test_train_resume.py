"""Resuming: a `memamba train` process killed after an epoch continues where it stopped, with identical results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_train import planted_bags, write_cohort

from memamba.train.loop import train_fold
from memamba.train.resume import RESUME_FILE

EPOCHS = 15
TRAIN_PARAMS = f'{{"epochs": {EPOCHS}, "grad_accum": 8, "lr": 0.002}}'


def train_command(cohort: Path, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "memamba", "train", "--cohort", str(cohort), "--fold", "0", "--model", "snn",
            "--model-params", '{"d_model": 16}', "--train-params", TRAIN_PARAMS, "-o", str(out_dir)]


def run_and_kill_after_first_checkpoint(command: list[str], out_dir: Path) -> None:
    """Start training, SIGKILL it as soon as its per-epoch resumable state exists."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out_dir / RESUME_FILE).exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no resumable state after 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume") / "cohort"
    write_cohort(folder, planted_bags(80, 7, "TCGA-RS"), n_val=20)
    return folder


def test_killed_training_resumes_and_gives_the_same_risks_as_an_uninterrupted_run(
    cohort: Path, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    run_and_kill_after_first_checkpoint(train_command(cohort, killed), killed)
    assert not (killed / "metrics.json").exists(), "the run finished before it was killed"
    epoch_at_kill = torch.load(killed / RESUME_FILE, weights_only=False)["epoch"]
    assert 1 <= epoch_at_kill < EPOCHS

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run(train_command(cohort, killed), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {epoch_at_kill}" in resumed.stderr
    uninterrupted = subprocess.run(train_command(cohort, tmp_path / "whole"), env=env, capture_output=True,
                                   text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]

    pd.testing.assert_frame_equal(pd.read_csv(killed / "risks.csv"), pd.read_csv(tmp_path / "whole/risks.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(killed / "curve.csv"), pd.read_csv(tmp_path / "whole/curve.csv"))
    assert not (killed / RESUME_FILE).exists()


def test_state_of_other_settings_is_ignored(cohort: Path, tmp_path: Path) -> None:
    train_fold(cohort, None, 0, "snn", {"d_model": 16}, {"epochs": 2, "grad_accum": 8}, tmp_path / "a",
               resume=True)
    (tmp_path / "b").mkdir()
    torch.save({"fingerprint": "another run", "epoch": 1}, tmp_path / "b" / RESUME_FILE)
    record = train_fold(cohort, None, 0, "snn", {"d_model": 16}, {"epochs": 2, "grad_accum": 8}, tmp_path / "b")
    reference = pd.read_csv(tmp_path / "a/risks.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b/risks.csv"), reference)
    assert record["epochs"] == 2
