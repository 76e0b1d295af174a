"""Atomic outputs: complete or absent, and no partial files left by dead writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memamba.io import atomic_output


def test_output_appears_only_after_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.csv"
    with atomic_output(target) as temporary:
        temporary.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    assert sorted(path.name for path in target.parent.iterdir()) == ["result.csv"]


def test_failure_leaves_neither_output_nor_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.h5"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("partial")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_partial_file_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    leftover = tmp_path / f".result.tmp-{dead_pid}.h5"
    leftover.write_text("half written")
    with atomic_output(tmp_path / "result.h5") as temporary:
        temporary.write_text("complete")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.h5"]


def test_temporary_of_a_live_writer_is_kept(tmp_path: Path) -> None:
    live = tmp_path / f".result.tmp-{os.getppid()}.h5"
    live.write_text("being written")
    with atomic_output(tmp_path / "result.h5") as temporary:
        temporary.write_text("complete")
    assert live.exists()
