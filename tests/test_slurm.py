"""profiles/slurm on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd with MariaDB, munge).

The cluster is started by the module fixture and stopped afterwards, also on failure. Outside CI the tests that
need it are skipped when its Debian packages are missing or we are not root; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from slurm.cluster import ACCOUNT, PARTITION, ClusterError, SlurmCluster, missing_programs
from test_workflow import TINY, job_counts, parse_output

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
IN_CI = os.environ.get("CI") == "true"
LOGGER = logging.getLogger(__name__)
WORKFLOW_TIMEOUT = 900
TEST_MEM_MB = 1500


def tiny_config(tmp_path: Path, out_dir: Path, device: str = "cpu") -> Path:
    """The tiny workflow config with its outputs under `out_dir` and both GPU stages on `device`."""
    config = {**TINY, "output_dir": str(out_dir)}
    config["features"] = {**config["features"], "device": device}
    config["train"] = {**config["train"], "device": device}
    path = tmp_path / f"tiny_{device}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def planned_resources(dry_run_output: str) -> dict[str, dict[str, str]]:
    """Rule name -> resources of its (last) job, from a dry run's job descriptions."""
    resources = {}
    for rule, block in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", dry_run_output, flags=re.MULTILINE | re.DOTALL):
        line = re.search(r"^\s+resources: (.*)$", block, flags=re.MULTILINE)
        if line:
            resources[rule] = dict(item.split("=", 1) for item in line.group(1).split(", "))
    return resources


def dry_run_with_profile(config: Path) -> str:
    command = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE.parent), "--dry-run",
               "--configfile", str(config)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_profile_requests_a_gpu_for_stages_configured_on_cuda(tmp_path: Path) -> None:
    resources = planned_resources(dry_run_with_profile(tiny_config(tmp_path, tmp_path / "out", "cuda")))
    assert {rule: resources[rule]["gpu"] for rule in ("features", "train")} == {"features": "1", "train": "1"}
    assert resources["features"]["cpus_per_gpu"] == "8"


def test_profile_requests_no_gpu_for_stages_configured_on_cpu(tmp_path: Path) -> None:
    resources = planned_resources(dry_run_with_profile(tiny_config(tmp_path, tmp_path / "out", "cpu")))
    assert {rule: resources[rule]["gpu"] for rule in ("features", "train")} == {"features": "0", "train": "0"}
    assert "gpu" not in resources["tile"]


def test_profile_gives_every_job_a_runtime_memory_account_and_partition(tmp_path: Path) -> None:
    resources = planned_resources(dry_run_with_profile(tiny_config(tmp_path, tmp_path / "out")))
    wanted = {"runtime", "mem_mb", "slurm_account", "slurm_partition"}
    assert {rule: sorted(wanted - set(values)) for rule, values in resources.items() if wanted - set(values)} == {}


def require_cluster_programs() -> None:
    """Skip (fail in CI) where the test cluster cannot run: Debian packages missing or not root."""
    missing = missing_programs()
    reason = ""
    if missing:
        reason = f"SLURM test cluster needs {', '.join(missing)} (make system-packages installs them)"
    elif os.geteuid() != 0:
        reason = "the SLURM test cluster runs its daemons as root"
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def test_cluster_without_accounting_database_fails_within_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_cluster_programs()
    monkeypatch.setattr(SlurmCluster, "_start_database", lambda self: None)
    cluster = SlurmCluster(tmp_path / "slurm", timeout=10)
    started = time.monotonic()
    try:
        with pytest.raises(ClusterError, match="slurmdbd not ready after 10 s"):
            cluster.start()
    finally:
        cluster.stop()
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    require_cluster_programs()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def write_test_profile(tmp_path: Path, node_cpus: int) -> Path:
    """profiles/slurm with this cluster's partition and account, a short first status check, kept SLURM logs,
    and each job's CPUs and memory capped so that two jobs share the small test node."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"] |= {"slurm_account": ACCOUNT, "slurm_partition": PARTITION,
                                     "mem_mb": TEST_MEM_MB}
    for values in profile["set-resources"].values():
        values["mem_mb"] = min(values["mem_mb"], TEST_MEM_MB)
        if "cpus_per_task" in values:
            values["cpus_per_task"] = max(1, min(values["cpus_per_task"], node_cpus // 2))
    profile |= {"slurm-init-seconds-before-status-checks": 1, "slurm-keep-successful-logs": True,
                "slurm-logdir": str(tmp_path / "slurm_logs"), "restart-times": 0}
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


class SlurmRun(NamedTuple):
    out_dir: Path
    config: Path
    log: str
    run_id: str


@pytest.fixture(scope="module")
def slurm_run(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> SlurmRun:
    """The tiny workflow, run through SLURM with the test profile."""
    tmp_path = tmp_path_factory.mktemp("slurm_run")
    node_cpus = int(cluster.run(["sinfo", "-h", "-o", "%c"]).stdout.strip())
    out_dir, config = tmp_path / "results", tiny_config(tmp_path, tmp_path / "results")
    command = [sys.executable, "-m", "snakemake", "--profile", str(write_test_profile(tmp_path, node_cpus)),
               "--configfile", str(config)]
    started = time.monotonic()
    result = subprocess.run(cluster.command(command), cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                            timeout=WORKFLOW_TIMEOUT)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    LOGGER.info("tiny workflow through SLURM: %.0f s", time.monotonic() - started)
    return SlurmRun(out_dir, config, log, re.search(r"SLURM run ID: (\S+)", log).group(1))


def sacct_jobs(cluster: SlurmCluster, run_id: str) -> list[dict[str, str]]:
    result = cluster.run(["sacct", "-X", "-n", "--parsable2", "--starttime", "now-1day", "--name", run_id,
                          "--format=JobIDRaw,State,Account,Partition,Comment,ExitCode"])
    assert result.returncode == 0, result.stderr
    fields = ("job_id", "state", "account", "partition", "comment", "exit_code")
    return [dict(zip(fields, line.split("|"), strict=True)) for line in result.stdout.splitlines()]


@pytest.mark.slow
def test_every_job_ran_as_a_completed_slurm_job_of_the_test_account(
    cluster: SlurmCluster, slurm_run: SlurmRun
) -> None:
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_run.log))
    jobs = sacct_jobs(cluster, slurm_run.run_id)
    assert {job["job_id"] for job in jobs} == submitted
    assert {(job["state"], job["account"], job["partition"], job["exit_code"]) for job in jobs} == {
        ("COMPLETED", ACCOUNT, PARTITION, "0:0")
    }


@pytest.mark.slow
def test_every_stage_went_through_slurm(cluster: SlurmCluster, slurm_run: SlurmRun) -> None:
    rules = {re.match(r"rule_([a-z_]+?)(_wildcards_|$)", job["comment"]).group(1)
             for job in sacct_jobs(cluster, slurm_run.run_id)}
    dry_run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--configfile", str(slurm_run.config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    jobs_with_work = set(job_counts(dry_run.stdout)) - {"all", "total"}
    assert rules == jobs_with_work


@pytest.mark.slow
def test_every_output_of_the_slurm_run_exists_and_parses(slurm_run: SlurmRun) -> None:
    out_dir = slurm_run.out_dir
    summary = subprocess.run(
        [sys.executable, "-m", "snakemake", "--summary", "--configfile", str(slurm_run.config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert summary.returncode == 0, summary.stderr
    rows = [line.split("\t") for line in summary.stdout.splitlines() if line.startswith(str(out_dir))]
    outputs = [Path(row[0]) for row in rows]
    assert outputs and [path for path in outputs if not path.exists()] == []
    for path in outputs:
        parse_output(path)
    assert list(out_dir.rglob("*.tmp-*")) == []
