"""`memamba features` on the command line: success, and the contract on bad input (exit 2, one line, no file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

CMU = Path(__file__).parent / "data" / "slides" / "cmu-1-small-region.svs"


def memamba_features(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "memamba", "features", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def coords(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("coords") / "cmu.h5"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("coords", data=np.array([[1020, 1200], [1200, 1800]], dtype=np.int64))
        dataset.attrs.update(patch_size_level0=256, patch_size=256, target_mpp=0.5, status="ok")
    return path


def assert_one_line_error_naming(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memamba features: error:") and name in lines[0]


def test_features_command_writes_the_features_file(coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmu.h5"
    result = memamba_features(CMU, coords, "-o", out, "--allow-random-weights", "--batch-size", 2)
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as handle:
        assert handle["features"].shape == (2, 1024) and handle.attrs["reader"] == "openslide"


def test_missing_slide_exits_2_naming_it_and_writes_nothing(coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    result = memamba_features(tmp_path / "absent.svs", coords, "-o", out, "--allow-random-weights")
    assert_one_line_error_naming(result, "absent.svs")
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_file_exits_2_naming_it_and_writes_nothing(coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    result = memamba_features(CMU, coords, "-o", out, "--weights", tmp_path / "uni.safetensors")
    assert_one_line_error_naming(result, "uni.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_zero_threads_exits_2_naming_the_option_and_writes_nothing(coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"
    result = memamba_features(CMU, coords, "-o", out, "--allow-random-weights", "--threads", 0)
    assert_one_line_error_naming(result, "--threads")
    assert list(tmp_path.iterdir()) == []


def test_tiles_reader_on_the_cpu_with_two_threads_writes_features(coords: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmu.h5"
    result = memamba_features(
        CMU, coords, "-o", out, "--allow-random-weights", "--reader", "tiles", "--threads", 2, "--batch-size", 1
    )
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as handle:
        assert handle["features"].shape == (2, 1024) and handle.attrs["reader"] == "tiles"


def test_several_slides_in_one_job_build_the_encoder_once_and_match_single_slide_jobs(
    coords: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        dataset = handle.create_dataset("coords", data=np.array([[900, 2400], [1380, 900], [1680, 2500]]))
        dataset.attrs.update(patch_size_level0=256, patch_size=256, target_mpp=0.5, status="ok")
    jobs = ["--slide", CMU, coords, tmp_path / "a.h5", "--slide", CMU, other, tmp_path / "b.h5"]
    result = memamba_features(*jobs, "--allow-random-weights", "--batch-size", 2)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("RANDOM weights") == 1  # one encoder for both slides
    alone = memamba_features(CMU, other, "-o", tmp_path / "alone.h5", "--allow-random-weights", "--batch-size", 2)
    assert alone.returncode == 0, alone.stderr
    with h5py.File(tmp_path / "a.h5", "r") as first, h5py.File(tmp_path / "b.h5", "r") as second:
        assert first["features"].shape == (2, 1024) and second["features"].shape == (3, 1024)
        with h5py.File(tmp_path / "alone.h5", "r") as single:
            np.testing.assert_array_equal(second["features"][()], single["features"][()])


def test_a_bad_slide_in_a_several_slide_job_is_recorded_and_the_others_are_encoded(
    coords: Path, tmp_path: Path
) -> None:
    bad, good = tmp_path / "bad.h5", tmp_path / "good.h5"
    jobs = ["--slide", tmp_path / "absent.svs", coords, bad, "--slide", CMU, coords, good]
    result = memamba_features(*jobs, "--allow-random-weights", "--batch-size", 2)
    assert result.returncode == 0, result.stderr
    assert "absent.svs" in result.stderr
    with h5py.File(bad, "r") as failed, h5py.File(good, "r") as encoded:
        assert failed["features"].shape == (0, 1024)
        status = failed.attrs["status"]
        assert status.startswith("failed:") and "absent.svs" in status
        assert encoded["features"].shape == (2, 1024) and encoded.attrs["status"] == "ok"


def test_slide_triples_beside_a_positional_slide_exit_2_and_write_nothing(coords: Path, tmp_path: Path) -> None:
    result = memamba_features(CMU, coords, "--slide", CMU, coords, tmp_path / "a.h5", "--allow-random-weights")
    assert_one_line_error_naming(result, "--slide")
    assert list(tmp_path.iterdir()) == []
