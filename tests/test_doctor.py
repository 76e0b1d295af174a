"""`memamba doctor` on this CPU machine: a real installation, and a broken one (shadowed OpenSlide, bad folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memamba.doctor import FAIL, OK, WARN, Check, check_gpu, check_mamba_ssm, check_output_dir, format_table


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "memamba", "doctor", "--keops-timeout", "300", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def statuses(table: str) -> dict[str, str]:
    """Check name -> status, from the doctor's table."""
    rows = {}
    for line in table.splitlines()[1:-1]:
        name, _, rest = line.partition("  ")
        if name.strip():
            rows[name.strip()] = rest.split()[0]
    return rows


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    return doctor("--output-dir", str(tmp_path_factory.mktemp("doctor") / "results"))


def test_doctor_passes_on_this_installation(healthy: subprocess.CompletedProcess[str]) -> None:
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.splitlines()[-1].endswith("ready")


def test_doctor_checks_every_part_of_an_installation(healthy: subprocess.CompletedProcess[str]) -> None:
    assert set(statuses(healthy.stdout)) == {
        "Python", "OpenSlide", "torch, timm", "HDF5", "GPU", "mamba-ssm kernels", "KeOps", "Snakemake",
        "output folder",
    }


def test_doctor_reports_the_openslide_library_version(healthy: subprocess.CompletedProcess[str]) -> None:
    import openslide

    assert statuses(healthy.stdout)["OpenSlide"] == OK
    assert f"library {openslide.__library_version__}" in healthy.stdout


@pytest.mark.skipif(check_gpu().status == OK, reason="this machine has a GPU")
def test_gpu_items_warn_without_failing_on_a_cpu_machine(healthy: subprocess.CompletedProcess[str]) -> None:
    rows = statuses(healthy.stdout)
    assert (rows["GPU"], rows["mamba-ssm kernels"]) == (WARN, WARN)


def test_missing_openslide_fails_with_how_to_fix_it(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "openslide"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise OSError("libopenslide.so.1: cannot open shared object file")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    result = doctor("--output-dir", str(tmp_path / "results"), env=env)
    assert result.returncode == 1
    assert statuses(result.stdout)["OpenSlide"] == FAIL
    assert "libopenslide.so.1" in result.stdout
    assert "fix: pip install -e '.[slide]'" in result.stdout


def test_output_folder_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    check = check_output_dir(tmp_path / "a_file" / "results")
    assert check.status == FAIL
    assert "is a file, not a folder" in check.detail


def test_output_folder_that_does_not_exist_yet_is_checked_in_its_parent(tmp_path: Path) -> None:
    check = check_output_dir(tmp_path / "new" / "results")
    assert (check.status, f"will be created in {tmp_path}" in check.detail) in {(OK, True), (WARN, True)}
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []


def test_mamba_ssm_absent_is_a_warning_not_a_failure() -> None:
    if check_mamba_ssm().detail.startswith("mamba-ssm "):
        pytest.skip("mamba-ssm is installed here")
    assert check_mamba_ssm().status == WARN


def test_table_puts_the_fix_under_an_item_that_is_not_ok() -> None:
    table = format_table([Check("A", OK, "fine", "unused"), Check("B", FAIL, "broken", "do this")])
    assert table.splitlines() == [
        "check  status  detail", "A      OK      fine", "B      FAIL    broken", "               fix: do this",
        "1 failed, 0 warnings: not ready",
    ]
