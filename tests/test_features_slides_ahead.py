"""A job's slides opened one ahead: the next slide is planned and read while the encoder finishes this one."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_features import write_coords
from test_features_tiles import GENERATED_COORDS, generated_svs  # noqa: F401 (a fixture)

from memamba.errors import InputError
from memamba.features import extract, tile_lanes
from memamba.features.extract import SlideJob, extract_features, extract_slides
from memamba.features.features_h5 import read_features
from memamba.features.slides_ahead import opened_ahead
from memamba.features.tile_reader import TilePatchReader

WAIT = 60.0
"""Seconds a test waits for what should happen at once; reached only where it does not happen."""


class _Slide:
    """A stand-in for an opened slide: records when it is started and closed."""

    def __init__(self, name: str, overlaps: bool = True) -> None:
        self.name, self.overlaps = name, overlaps
        self.reading_done = threading.Event()
        self.opened, self.started, self.closed = threading.Event(), threading.Event(), threading.Event()

    def start(self) -> None:
        if not self.closed.is_set():
            self.started.set()

    def close(self) -> None:
        self.closed.set()
        self.reading_done.set()


def test_the_next_slide_is_opened_at_once_and_started_when_this_ones_reading_is_over() -> None:
    slides = {name: _Slide(name) for name in "abc"}

    def open_job(name: str) -> _Slide:
        slides[name].opened.set()
        return slides[name]

    walk = opened_ahead(list("abc"), open_job)
    name, first = next(walk)
    assert name == "a" and first is slides["a"]
    assert slides["b"].opened.wait(WAIT) and not slides["c"].opened.is_set()
    assert slides["b"].started.wait(0.2) is False  # opened, not yet reading: "a" still reads
    first.reading_done.set()
    assert slides["b"].started.wait(WAIT)
    assert next(walk)[1] is slides["b"] and first.closed.is_set()
    assert list(walk) == [("c", slides["c"])]
    assert all(slide.closed.is_set() for slide in slides.values())


def test_a_slide_that_cannot_overlap_is_consumed_before_the_next_is_opened() -> None:
    slides = {"a": _Slide("a", overlaps=False), "b": _Slide("b")}
    opened_names: list[str] = []

    def open_job(name: str) -> _Slide:
        opened_names.append(name)
        return slides[name]

    walk = opened_ahead(["a", "b"], open_job)
    next(walk)
    assert opened_names == ["a"]
    next(walk)
    assert opened_names == ["a", "b"] and slides["a"].closed.is_set()


def test_an_input_error_is_handed_over_at_its_turn_and_a_stopped_consumer_closes_what_was_opened() -> None:
    slides = {"a": _Slide("a"), "c": _Slide("c")}

    def open_job(name: str) -> _Slide:
        if name == "b":
            raise InputError("b.svs: bad")
        return slides[name]

    walk = opened_ahead(["a", "b", "c"], open_job)
    next(walk)
    name, outcome = next(walk)
    assert name == "b" and isinstance(outcome, InputError) and str(outcome) == "b.svs: bad"
    assert slides["c"].started.wait(WAIT)  # nothing to wait for behind a slide that failed to open
    walk.close()
    assert slides["a"].closed.is_set() and slides["c"].closed.is_set()


@pytest.fixture
def three_slides(generated_svs: Path, tmp_path: Path) -> list[SlideJob]:  # noqa: F811
    """Three copies of the generated slide, each with its coords file (the second with fewer patches)."""
    jobs = []
    for index, count in enumerate((5, 3, 5)):
        slide = shutil.copy(generated_svs, tmp_path / f"slide{index}.svs")
        coords = write_coords(tmp_path / f"slide{index}.h5", GENERATED_COORDS[:count], patch_size_level0=512)
        jobs.append(SlideJob(Path(slide), coords, tmp_path / f"slide{index}.features.h5"))
    return jobs


def test_a_jobs_next_slide_is_read_while_this_ones_features_are_still_to_be_written(
    three_slides: list[SlideJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    first_read = {job.slide.name: threading.Event() for job in three_slides}
    read_before_written = []
    read_batch, write_features = TilePatchReader.read_batch, extract.write_features

    def recording_read_batch(self: TilePatchReader, *args, **kwargs):
        first_read[self.pyramid.path.name].set()
        return read_batch(self, *args, **kwargs)

    def waiting_write_features(path: Path, *args, **kwargs) -> None:
        index = [job.output for job in three_slides].index(path)
        if index + 1 < len(three_slides):  # pipelined, the next slide reads while this one is written
            read_before_written.append(first_read[three_slides[index + 1].slide.name].wait(WAIT))
        write_features(path, *args, **kwargs)

    monkeypatch.setattr(TilePatchReader, "read_batch", recording_read_batch)
    monkeypatch.setattr(extract, "write_features", waiting_write_features)
    results = extract_slides(three_slides, allow_random_weights=True, batch_size=2, reader="tiles")
    assert read_before_written == [True, True]
    assert [result.n_patches for result in results] == [5, 3, 5]


def test_a_job_of_slides_read_ahead_gives_each_slide_the_features_it_gets_alone(
    three_slides: list[SlideJob], tmp_path: Path
) -> None:
    extract_slides(three_slides, allow_random_weights=True, batch_size=2, reader="tiles")
    for job in three_slides:
        alone = tmp_path / f"{job.slide.stem}.alone.h5"
        extract_features(job.slide, job.coords, alone, allow_random_weights=True, batch_size=2, reader="tiles")
        np.testing.assert_array_equal(read_features(job.output)[0], read_features(alone)[0])


def test_a_bad_slide_between_two_good_ones_is_recorded_and_the_last_one_still_encoded(
    three_slides: list[SlideJob],
) -> None:
    three_slides[1].slide.unlink()
    results = extract_slides(three_slides, allow_random_weights=True, batch_size=2, reader="tiles")
    assert results[1].status.startswith("failed: ") and "slide file not found" in results[1].status
    assert [results[0].n_patches, results[2].n_patches] == [5, 5]
    features, _, attrs = read_features(three_slides[2].output)
    assert attrs["status"] == "ok" and features.shape == (5, 1024) and np.isfinite(features).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG lanes beside decode processes need a CUDA GPU")
def test_on_cuda_a_job_of_slides_read_ahead_gives_each_slide_the_features_it_gets_alone(
    three_slides: list[SlideJob], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tile_lanes, "SMALL_SLIDE_PATCHES", 0)  # nvJPEG and libjpeg lanes both read
    results = extract_slides(three_slides, allow_random_weights=True, batch_size=2, device="cuda", reader="tiles")
    assert [result.reader for result in results] == ["tiles"] * 3
    for job in three_slides:
        alone = tmp_path / f"{job.slide.stem}.alone.h5"
        extract_features(
            job.slide, job.coords, alone, allow_random_weights=True, batch_size=2, device="cuda", reader="tiles"
        )
        together, apart = read_features(job.output)[0].astype(np.float64), read_features(alone)[0].astype(np.float64)
        assert np.abs(together - apart).mean() < 0.01 * np.abs(apart).mean()


def test_a_slide_whose_lanes_fail_stops_the_job_and_leaves_no_lane_of_the_next_slide_running(
    three_slides: list[SlideJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_batch, failing = TilePatchReader.read_batch, three_slides[0].slide.name
    many = np.concatenate([GENERATED_COORDS] * 10)  # more batches than its lanes may read ahead
    write_coords(three_slides[1].coords, many, patch_size_level0=512)

    def read_batch_failing_on_the_first_slide(self: TilePatchReader, *args, **kwargs):
        if self.pyramid.path.name == failing:
            raise RuntimeError(f"{failing}: a decoder crashed")
        return read_batch(self, *args, **kwargs)

    before = {thread.ident for thread in threading.enumerate()}
    monkeypatch.setattr(TilePatchReader, "read_batch", read_batch_failing_on_the_first_slide)
    with pytest.raises(RuntimeError, match="a decoder crashed"):
        extract_slides(three_slides, allow_random_weights=True, batch_size=2, reader="tiles")
    deadline = time.monotonic() + WAIT
    while {thread.ident for thread in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not {thread.name for thread in threading.enumerate() if thread.ident not in before}
    assert not three_slides[1].output.exists()
