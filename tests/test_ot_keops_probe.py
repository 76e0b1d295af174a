"""The KeOps probe (crash-proof, cached) and the OT backends that depend on its verdict."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
import torch

from memamba import keops_probe, ot
from memamba.keops_probe import CRASH_HOOK_ENV, probe_keops
from memamba.ot import TENSORIZED_MAX_PAIRS, auto_ot_backend, sinkhorn_potentials

needs_pykeops = pytest.mark.skipif(
    importlib.util.find_spec("pykeops") is None, reason="pykeops is not installed: the probe starts no child"
)


@pytest.fixture
def fresh_verdicts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty verdict cache (on disk and in memory); returns its folder."""
    monkeypatch.setenv("MEMAMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(keops_probe, "_VERDICTS", {})
    monkeypatch.setattr(ot, "_FALLBACKS_LOGGED", set())
    return tmp_path


@pytest.fixture
def segfaulting_keops(monkeypatch: pytest.MonkeyPatch, fresh_verdicts: Path) -> Path:
    """Every probe child kills itself with SIGSEGV, as pykeops 2.3 does on CUDA 13."""
    monkeypatch.setenv(CRASH_HOOK_ENV, "1")
    return fresh_verdicts


@needs_pykeops
def test_probe_survives_a_segfaulting_child_and_records_it_broken(segfaulting_keops: Path) -> None:
    verdict = probe_keops("cpu")
    assert not verdict.works and "SIGSEGV" in verdict.reason
    (cache_file,) = segfaulting_keops.glob("keops-probe-*.json")
    assert json.loads(cache_file.read_text())["works"] is False


@needs_pykeops
def test_cached_verdict_is_used_without_probing_again(segfaulting_keops: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe_keops("cpu")
    monkeypatch.delenv(CRASH_HOOK_ENV)
    monkeypatch.setattr(keops_probe, "_VERDICTS", {})
    assert "SIGSEGV" in probe_keops("cpu").reason


@needs_pykeops
def test_cached_verdict_of_another_configuration_is_ignored(segfaulting_keops: Path) -> None:
    verdict = probe_keops("cpu")
    (cache_file,) = segfaulting_keops.glob("keops-probe-*.json")
    stored = json.loads(cache_file.read_text())
    cache_file.write_text(json.dumps({**stored, "reason": "from another pykeops", "key": {"pykeops": "0.1"}}))
    keops_probe._VERDICTS.clear()
    assert probe_keops("cpu").reason == verdict.reason


def test_probe_without_pykeops_is_broken_without_a_child(monkeypatch: pytest.MonkeyPatch, fresh_verdicts: Path) -> None:
    real_version = keops_probe.importlib.metadata.version

    def version(package: str) -> str:
        if package == "pykeops":
            raise keops_probe.importlib.metadata.PackageNotFoundError(package)
        return real_version(package)

    monkeypatch.setattr(keops_probe.importlib.metadata, "version", version)
    verdict = probe_keops("cpu")
    assert not verdict.works and verdict.reason == "pykeops is not installed"
    assert not list(fresh_verdicts.iterdir())


@needs_pykeops
def test_geomloss_online_falls_back_to_streaming_where_keops_crashes(
    segfaulting_keops: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = torch.randn(40, 4), torch.randn(6, 4)
    with caplog.at_level(logging.WARNING, logger="memamba.ot"):
        f_online, g_online = sinkhorn_potentials(x, y, blur=0.3, backend="geomloss_online")
    f_stream, g_stream = sinkhorn_potentials(x, y, blur=0.3, backend="streaming")
    torch.testing.assert_close((f_online, g_online), (f_stream, g_stream), rtol=0, atol=0)
    assert "streaming backend instead" in caplog.text


def test_auto_backend_uses_the_dense_cost_matrix_for_small_bags() -> None:
    if importlib.util.find_spec("geomloss") is None:
        pytest.skip("geomloss is not installed: auto always streams")
    assert auto_ot_backend(20_000, 331, "cpu") == "tensorized"


@needs_pykeops
def test_auto_backend_streams_large_bags_where_keops_crashes(segfaulting_keops: Path) -> None:
    assert auto_ot_backend(TENSORIZED_MAX_PAIRS, 2, "cpu") == "streaming"


def test_auto_backend_with_tolerance_matches_the_tensorized_backend_on_small_bags() -> None:
    if importlib.util.find_spec("geomloss") is None:
        pytest.skip("geomloss is not installed: auto always streams")
    x, y = torch.randn(40, 4), torch.randn(6, 4)
    auto = sinkhorn_potentials(x, y, blur=0.3, backend="auto", tolerance=1e-3)
    dense = sinkhorn_potentials(x, y, blur=0.3, backend="tensorized")
    torch.testing.assert_close(auto, dense, rtol=0, atol=0)


@needs_pykeops
def test_probe_that_times_out_is_broken_but_not_cached(fresh_verdicts: Path) -> None:
    verdict = probe_keops("cpu", timeout_s=0.001)
    assert not verdict.works and "did not finish" in verdict.reason
    assert not list(fresh_verdicts.glob("keops-probe-*.json"))
