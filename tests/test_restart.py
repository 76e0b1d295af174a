"""Safe restarts: a tiny run killed during feature extraction (SIGKILL to every process, as in a crash; then
`snakemake --unlock`, as the README says), restarted and stopped during training (SIGTERM to Snakemake, as on
Ctrl-C or scancel), then restarted to the end."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import h5py
import psutil
import pytest
import yaml
from test_workflow import TINY, parse_output

ROOT = Path(__file__).resolve().parents[1]
STAGE_TIMEOUT = 600


class RestartedRun(NamedTuple):
    out_dir: Path
    config: Path
    interrupted: list[Path]
    final: subprocess.CompletedProcess[str]


def snakemake_command(config: Path, *args: str) -> list[str]:
    """The repository's workflow on `config`, with Snakemake's state (locks, metadata) beside the config."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
            str(config.parent), "--cores", "2", "--configfile", str(config), *args]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = snakemake_command(config)
    with log.open("wb") as handle:
        return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_running_job(process: subprocess.Popen[bytes], running: Callable[[], list[Path]]) -> list[Path]:
    """Outputs of the jobs that have started but not finished, once there is one."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    while time.monotonic() < deadline:
        outputs = running()
        if outputs:
            time.sleep(1.0)
            return outputs
        assert process.poll() is None, "the workflow ended before the stage to interrupt started"
        time.sleep(0.2)
    raise AssertionError(f"no job of the stage to interrupt started within {STAGE_TIMEOUT} s")


def started_not_finished(logs: Path, outputs: Path, output_name: Callable[[Path], Path]) -> Callable[[], list[Path]]:
    """Outputs whose job log exists (the job started) but which do not exist yet."""

    def running() -> list[Path]:
        candidates = [output_name(log.relative_to(logs)) for log in logs.rglob("*.log")] if logs.exists() else []
        return [outputs / path for path in candidates if not (outputs / path).exists()]

    return running


def kill_everything(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL Snakemake and every process below it, at once, as a crash of the machine would."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        member.kill()
    psutil.wait_procs(tree, timeout=60)
    process.wait(timeout=60)


def terminate(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """SIGTERM to Snakemake alone; returns the processes below it that outlived it."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    _, alive = psutil.wait_procs(children, timeout=30)
    for survivor in alive:
        survivor.kill()
    return alive


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> RestartedRun:
    folder = tmp_path_factory.mktemp("restart")
    out_dir = folder / "results"
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump({**copy.deepcopy(TINY), "output_dir": str(out_dir)}))
    encoder = TINY["features"]["encoder"]

    features = start(config, folder / "killed_in_features.log")
    features_running = started_not_finished(
        out_dir / "logs" / "features", out_dir / "features", lambda log: log.with_suffix(".h5")
    )
    interrupted = wait_for_running_job(features, features_running)
    kill_everything(features)
    assert all(encoder in str(path) for path in interrupted)
    unlock = subprocess.run(snakemake_command(config, "--unlock"), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert unlock.returncode == 0, unlock.stderr[-3000:]

    training = start(config, folder / "stopped_in_training.log")
    train_running = started_not_finished(
        out_dir / "logs" / "train", out_dir / "runs", lambda log: log.with_suffix("") / "metrics.json"
    )
    interrupted += wait_for_running_job(training, train_running)
    survivors = terminate(training)
    assert survivors == [], f"jobs outlived the stopped workflow: {survivors}"

    final = subprocess.run(snakemake_command(config), cwd=ROOT, capture_output=True, text=True, timeout=1200)
    return RestartedRun(out_dir, config, interrupted, final)


@pytest.mark.slow
def test_restarted_workflow_finishes(restarted: RestartedRun) -> None:
    assert restarted.final.returncode == 0, restarted.final.stdout[-4000:] + restarted.final.stderr[-4000:]


@pytest.mark.slow
def test_interrupted_jobs_were_rerun_to_valid_outputs(restarted: RestartedRun) -> None:
    assert any(path.suffix == ".h5" for path in restarted.interrupted)
    assert any(path.name == "metrics.json" for path in restarted.interrupted)
    for path in restarted.interrupted:
        parse_output(path)


@pytest.mark.slow
def test_restarted_workflow_leaves_no_partial_files(restarted: RestartedRun) -> None:
    assert sorted(restarted.out_dir.rglob("*.tmp-*")) == []
    for path in restarted.out_dir.rglob("*.h5"):
        with h5py.File(path, "r") as handle:
            assert len(handle.keys()) > 0


@pytest.mark.slow
def test_every_output_of_the_restarted_workflow_exists_and_parses(restarted: RestartedRun) -> None:
    summary = subprocess.run(snakemake_command(restarted.config, "--summary"), cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr
    outputs = [Path(line.split("\t")[0]) for line in summary.stdout.splitlines()
               if line.startswith(str(restarted.out_dir))]
    assert outputs and [path for path in outputs if not path.exists()] == []
    for path in outputs:
        parse_output(path)


@pytest.mark.slow
def test_restarted_workflow_has_nothing_left_to_do(restarted: RestartedRun) -> None:
    result = subprocess.run(snakemake_command(restarted.config, "--dry-run"), cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert "Nothing to be done" in result.stdout + result.stderr
