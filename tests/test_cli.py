"""The `memamba` command line: instant help, one subcommand per stage, bad input gives exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

STAGES = ("demo", "tile", "features", "genomics", "train", "evaluate", "report")
HEAVY_MODULES = ("torch", "timm", "openslide", "h5py", "pandas", "sklearn", "sksurv", "cv2", "matplotlib", "geomloss")


def _memamba(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memamba", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_stage() -> None:
    result = _memamba("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert f"    {stage} " in result.stdout


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from memamba.cli import build_parser; build_parser().format_help(); "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage: str) -> None:
    result = _memamba(stage, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: memamba {stage}")


def test_bad_json_parameters_exit_2_with_one_line(tmp_path) -> None:
    result = _memamba(
        "train", "--cohort", str(tmp_path), "--fold", "0", "--model-params", "{oops", "-o", str(tmp_path / "run")
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--model-params" in result.stderr
    assert not (tmp_path / "run").exists()


def test_config_subcommand_writes_yaml(tmp_path) -> None:
    out = tmp_path / "config.yaml"
    result = _memamba("config", "--json", '{"output_dir": "x", "train": {"epochs": 3}}', "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == ["output_dir: x", "train:", "  epochs: 3"]
