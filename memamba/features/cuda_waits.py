"""Waiting for the GPU without spinning a CPU core.

CUDA's default wait busy-polls: on a one-GPU machine every thread waiting on an event or stream keeps a
core at 100 %. The encoder's loop and each reader lane wait for the GPU all the time, so they would take
cores from the JPEG decoders. Blocking events sleep until the GPU reaches them instead.
"""

from __future__ import annotations

import torch

BLOCKING = True
"""Whether waits sleep (True) or busy-poll as CUDA does by default (False)."""


def gpu_event() -> torch.cuda.Event:
    """A CUDA event, recorded by the caller, whose `synchronize()` sleeps until the GPU reaches it."""
    return torch.cuda.Event(blocking=BLOCKING)


class HostMemoryInUse:
    """Host memory the GPU may still be reading: `mark` once the reads are queued, `wait` before writing
    the memory again (or freeing it)."""

    def __init__(self) -> None:
        self._done: torch.cuda.Event | None = None
        self._kept: tuple = ()

    def mark(self, stream: torch.cuda.Stream | None = None, keep: tuple = ()) -> None:
        """The reads queued so far on `stream` (default: the current one) use the memory; `keep` holds
        objects (host arrays the GPU reads) alive until they are done."""
        self._done = gpu_event()
        self._done.record(stream)
        self._kept = keep

    def wait(self) -> None:
        """Return once the GPU is past the reads last marked."""
        if self._done is not None:
            self._done.synchronize()
            self._done, self._kept = None, ()


def wait_for_stream(stream: torch.cuda.Stream) -> None:
    """Return once the work queued on `stream` so far is done."""
    done = gpu_event()
    done.record(stream)
    done.synchronize()
