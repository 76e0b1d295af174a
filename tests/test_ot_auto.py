"""The "auto" OT backend's choice: dense up to a pair limit that follows free GPU memory on CUDA."""

from __future__ import annotations

import importlib.util

import pytest

from memamba import ot
from memamba.ot import DENSE_MATRICES, DENSE_MEMORY_FRACTION, TENSORIZED_MAX_PAIRS, auto_ot_backend, dense_pair_limit

needs_geomloss = pytest.mark.skipif(
    importlib.util.find_spec("geomloss") is None, reason="geomloss is not installed: auto always streams"
)
GIB = 2**30


def test_dense_pair_limit_off_cuda_ignores_memory() -> None:
    assert dense_pair_limit("cpu", free_bytes=1000 * GIB) == TENSORIZED_MAX_PAIRS


def test_dense_pair_limit_on_cuda_fits_dense_matrices_in_a_fraction_of_free_memory() -> None:
    limit = dense_pair_limit("cuda", free_bytes=130 * GIB)
    assert limit * 4 * DENSE_MATRICES <= 130 * GIB * DENSE_MEMORY_FRACTION
    assert (limit + 1) * 4 * DENSE_MATRICES > 130 * GIB * DENSE_MEMORY_FRACTION
    assert dense_pair_limit("cuda", free_bytes=GIB) == TENSORIZED_MAX_PAIRS


@needs_geomloss
def test_auto_picks_dense_for_a_whole_slide_bag_on_a_large_gpu() -> None:
    assert auto_ot_backend(100_000, 331, "cuda", free_bytes=130 * GIB) == "tensorized"
    assert auto_ot_backend(100_000, 331, "cpu") != "tensorized"


@needs_geomloss
def test_auto_streams_on_a_gpu_without_room_where_keops_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ot, "_keops_works", lambda device_type: False)
    assert auto_ot_backend(100_000, 331, "cuda", free_bytes=GIB) == "streaming"
    assert auto_ot_backend(10_000, 331, "cuda", free_bytes=GIB) == "tensorized"
