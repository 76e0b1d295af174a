"""A job's slides opened one ahead, so that the encoder does not wait between slides.

While one slide is encoded, a background thread opens the next (reads its coords, plans its reader), and
the next slide's lanes start reading as soon as this slide's lanes have read their last batch: the encoder
then finds the next slide's first batches ready instead of waiting for its planning, its first reads, and
this slide's last batches and features file. A slide whose reader forks worker processes (OpenSlide's
DataLoader) is not overlapped: the next slide is opened only after it, so that nothing runs in another
thread while its workers fork.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from memamba.errors import InputError


class OpenedSlide(Protocol):
    """What `open_job` gives for a slide."""

    overlaps: bool
    """Whether the next slide may be opened and read while this one is encoded."""
    reading_done: threading.Event
    """Set once this slide's reading is over (its lanes have ended), though batches may still wait."""

    def start(self) -> None:
        """Start reading (the consumer's first batch starts it otherwise); nothing if started or closed."""

    def close(self) -> None:
        """Stop reading and free the readers; sets `reading_done`."""


Job = TypeVar("Job")
Opened = TypeVar("Opened", bound=OpenedSlide)


def opened_ahead(
    jobs: Sequence[Job],
    open_job: Callable[[Job], Opened],
    thread_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Iterator[tuple[Job, Opened | InputError]]:
    """(job, its opened slide or the InputError opening raised) for each of `jobs` in turn, each opened by
    `open_job` in a thread of its own (under `thread_context`, e.g. the job's CUDA device) while the slide
    before it is consumed. Each yielded slide is closed once the consumer asks for the next, or stops;
    errors other than InputError are raised at the slide's turn."""
    pending: _Opening | None = _Opening(open_job, jobs[0], thread_context) if jobs else None
    current: Opened | InputError | None = None
    try:
        for index, job in enumerate(jobs):
            current, pending = pending.result(), None
            following = jobs[index + 1] if index + 1 < len(jobs) else None
            if following is not None and (isinstance(current, InputError) or current.overlaps):
                pending = _Opening(open_job, following, thread_context)
                threading.Thread(target=_start_when_read, args=(current, pending), daemon=True).start()
            yield job, current
            _close(current)
            current = None
            if following is not None and pending is None:
                pending = _Opening(open_job, following, thread_context)
    finally:
        _close(current)
        if pending is not None:
            with contextlib.suppress(BaseException):  # the consumer stopped: nothing is owed to it
                _close(pending.result())


class _Opening:
    """`open_job(job)` running in a thread of its own, which has ended once its `result` is returned (no
    thread is left behind when a slide's OpenSlide reader forks its workers)."""

    def __init__(self, open_job: Callable, job: object, thread_context: Callable) -> None:
        self.outcome: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(open_job, job, thread_context), daemon=True, name="memamba-open-slide"
        )
        self.thread.start()

    def _run(self, open_job: Callable, job: object, thread_context: Callable) -> None:
        with thread_context():
            try:
                self.outcome = open_job(job)
            except InputError as error:
                self.outcome = error
            except BaseException as error:  # raised at the slide's turn
                self.error = error

    def result(self) -> object:
        """The opened slide or its InputError; other errors are raised."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.outcome


def _start_when_read(current: OpenedSlide | InputError, following: _Opening) -> None:
    """Start the `following` slide's reading once the `current` one's is over."""
    if not isinstance(current, InputError):
        current.reading_done.wait()
    with contextlib.suppress(BaseException):  # an error opening it reaches the consumer at its turn
        opened = following.result()
        if not isinstance(opened, InputError):
            opened.start()


def _close(opened: OpenedSlide | InputError | None) -> None:
    if opened is not None and not isinstance(opened, InputError):
        opened.close()
