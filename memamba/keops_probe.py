"""Whether KeOps works on a device: a tiny formula run once in a subprocess, the verdict cached on disk.

KeOps can kill the process that calls it (pykeops 2.3 segfaults at its first formula on CUDA 13), and a
segmentation fault cannot be caught. So the formula runs in a child process (`python -m
memamba.keops_probe DEVICE`); the parent reads only its exit status and records "works" or "broken"
with the reason. The verdict is cached in a JSON file per configuration (Python, torch, CUDA, pykeops
and keopscore versions, device type and GPU name) under MEMAMBA_CACHE_DIR, else
$XDG_CACHE_HOME/memamba, else ~/.cache/memamba, and in memory for the life of the process; a probe that
times out is remembered only in memory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from memamba.io import atomic_output

logger = logging.getLogger(__name__)

CRASH_HOOK_ENV = "MEMAMBA_KEOPS_PROBE_CRASH"
"""Test hook: when set to 1 in the child's environment, the child kills itself with SIGSEGV first."""
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class KeopsVerdict:
    """works: KeOps computed the probe formula correctly; reason: "ok" or why not; key: the configuration."""

    works: bool
    reason: str
    key: dict[str, str]


_VERDICTS: dict[tuple[str, str], KeopsVerdict] = {}


def probe_keops(
    device: str = "cpu", *, cache_dir: Path | None = None, refresh: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> KeopsVerdict:
    """The verdict for device ("cpu" or "cuda[:i]"): from memory, else the cache file, else a child process.

    refresh: probe again even when a verdict is known. Never raises for KeOps failures: a crash, a
    wrong result, a time-out (first compilations take seconds to minutes) or a missing pykeops is a
    "broken" verdict with its reason.
    """
    device_type = device.split(":")[0]
    folder = _cache_dir(cache_dir)
    memo_key = (device_type, str(folder))
    if not refresh and memo_key in _VERDICTS:
        return _VERDICTS[memo_key]
    key = _configuration(device_type)
    if key["pykeops"] == "missing":
        return KeopsVerdict(False, "pykeops is not installed", key)
    cache_file = folder / f"keops-probe-{_digest(key)}.json"
    if not refresh:
        known = _read_verdict(cache_file, key)
        if known is not None:
            _VERDICTS[memo_key] = known
            return known
    works, reason, timed_out = _run_child(device_type, timeout_s)
    verdict = KeopsVerdict(works, reason, key)
    log = logger.info if works else logger.warning
    log("KeOps on %s: %s (%s)", device_type, "works" if works else "broken", reason)
    if not timed_out:  # a slow first compilation is not a verdict for the next process
        _write_verdict(cache_file, verdict)
    _VERDICTS[memo_key] = verdict
    return verdict


def _run_child(device_type: str, timeout_s: float) -> tuple[bool, str, bool]:
    """Run the probe formula in a child Python; (works, reason, timed out) from its exit status."""
    command = [sys.executable, "-m", "memamba.keops_probe", device_type]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return False, f"the probe did not finish within {timeout_s:g} s", True
    if child.returncode == 0:
        return True, "ok", False
    if child.returncode < 0:
        number = -child.returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return False, f"the probe process was killed by {name}", False
    last_line = (child.stderr.strip().splitlines() or ["no message"])[-1]
    return False, f"the probe process exited with status {child.returncode}: {last_line}", False


def _configuration(device_type: str) -> dict[str, str]:
    """What the verdict depends on: versions of Python, torch, CUDA, pykeops, keopscore; device and GPU."""
    import torch

    key = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "device": device_type,
    }
    for package in ("pykeops", "keopscore"):
        try:
            key[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            key[package] = "missing"
    if device_type == "cuda" and torch.cuda.is_available():
        key["gpu"] = torch.cuda.get_device_name()
    return key


def _cache_dir(cache_dir: Path | None) -> Path:
    """The folder of the verdict files (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("MEMAMBA_CACHE_DIR"):
        return Path(os.environ["MEMAMBA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memamba"


def _digest(key: dict[str, str]) -> str:
    """Short stable hash of a configuration."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _read_verdict(path: Path, key: dict[str, str]) -> KeopsVerdict | None:
    """The verdict stored in path for exactly this configuration, or None (absent, unreadable or stale)."""
    try:
        stored = json.loads(path.read_text())
        verdict = KeopsVerdict(bool(stored["works"]), str(stored["reason"]), dict(stored["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return verdict if verdict.key == key else None


def _write_verdict(path: Path, verdict: KeopsVerdict) -> None:
    """Store the verdict; an unwritable cache only costs a new probe in the next process."""
    try:
        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(asdict(verdict), indent=1))
    except OSError as error:
        logger.warning("could not cache the KeOps verdict in %s (%s); the next process will probe again", path, error)


def _probe_formula(device_type: str) -> None:
    """Child side: a Gaussian-kernel sum with KeOps checked against dense torch; exit status 1 if it differs."""
    if os.environ.get(CRASH_HOOK_ENV) == "1":
        os.kill(os.getpid(), signal.SIGSEGV)
    import torch
    from pykeops.torch import LazyTensor

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=generator).to(device_type)
    y = torch.randn(40, 3, generator=generator).to(device_type)
    squared = ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
    kernel_sums = (-squared).exp().sum(dim=1).reshape(-1)
    expected = torch.exp(-(torch.cdist(x, y) ** 2)).sum(dim=1)
    if not torch.allclose(kernel_sums, expected, rtol=1e-4, atol=1e-5):
        sys.exit(f"KeOps gave a wrong kernel sum (max error {float((kernel_sums - expected).abs().max()):.3g})")


if __name__ == "__main__":
    if importlib.util.find_spec("pykeops") is None:
        sys.exit("pykeops is not installed")
    _probe_formula(sys.argv[1] if len(sys.argv) > 1 else "cpu")
