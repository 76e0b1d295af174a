"""One GPU per feature job: slot files locked by concurrent jobs on one node."""

from __future__ import annotations

from pathlib import Path

from memamba.features.gpu_slot import claim_gpu


def test_concurrent_jobs_claim_different_cards(tmp_path: Path) -> None:
    first, second = claim_gpu(2, tmp_path), claim_gpu(2, tmp_path)
    assert (first[0], second[0]) == (0, 1)


def test_no_card_is_claimed_when_all_are_held(tmp_path: Path) -> None:
    held = [claim_gpu(2, tmp_path), claim_gpu(2, tmp_path)]
    assert claim_gpu(2, tmp_path) is None and all(held)


def test_a_finished_job_frees_its_card(tmp_path: Path) -> None:
    index, handle = claim_gpu(2, tmp_path)
    handle.close()
    assert claim_gpu(2, tmp_path)[0] == index
