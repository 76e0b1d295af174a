"""CUDA's hardware queues: a CUDA features job asks for QUEUES of them before CUDA starts, and keeps a
user's own CUDA_DEVICE_MAX_CONNECTIONS."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memamba.features import hardware_queues
from memamba.features.hardware_queues import QUEUES, VARIABLE, widen_hardware_queues

ROOT = Path(__file__).resolve().parents[1]


def test_unset_variable_is_set_to_the_largest_queue_count(monkeypatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setattr(hardware_queues, "driver_started", lambda: False)
    assert widen_hardware_queues() is True
    assert os.environ[VARIABLE] == str(QUEUES) == "32"


def test_a_users_setting_is_kept_and_logged(monkeypatch, caplog) -> None:
    monkeypatch.setenv(VARIABLE, "8")
    with caplog.at_level(logging.INFO, logger="memamba.features.hardware_queues"):
        assert widen_hardware_queues() is False
    assert os.environ[VARIABLE] == "8"
    assert any(f"{VARIABLE}=8" in record.getMessage() for record in caplog.records)
    monkeypatch.setenv(VARIABLE, "32")
    assert widen_hardware_queues() is True


def test_once_the_driver_has_started_nothing_is_set_and_a_warning_says_so(monkeypatch, caplog) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setattr(hardware_queues, "driver_started", lambda: True)
    with caplog.at_level(logging.WARNING, logger="memamba.features.hardware_queues"):
        assert widen_hardware_queues() is False
    assert VARIABLE not in os.environ
    assert any(VARIABLE in record.getMessage() for record in caplog.records)


def _variable_after_job(device: str) -> str:
    """CUDA_DEVICE_MAX_CONNECTIONS in a fresh process (started without it) after an empty job on `device`."""
    script = (
        "import os\n"
        "from memamba.errors import InputError\n"
        "from memamba.features.extract import extract_slides\n"
        "try:\n"
        f"    extract_slides([], device={device!r}, allow_random_weights=True)\n"
        "except InputError:\n"
        "    pass  # no GPU here: the device check comes after the queues were asked for\n"
        f"print(os.environ.get({VARIABLE!r}, 'unset'))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_cuda_job_asks_for_the_queues_before_cuda_starts_and_a_cpu_job_does_not() -> None:
    assert _variable_after_job("cuda") == str(QUEUES)
    assert _variable_after_job("cpu") == "unset"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs the CUDA driver (GPU machine)")
def test_the_driver_counts_as_started_once_torch_has_asked_for_gpus() -> None:
    script = (
        "from memamba.features.hardware_queues import driver_started\n"
        "before = driver_started()\n"
        "import torch\n"
        "torch.cuda.is_available()\n"
        "print(before, driver_started())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "True"]
