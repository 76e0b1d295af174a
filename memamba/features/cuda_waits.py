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


def wait_for_stream(stream: torch.cuda.Stream) -> None:
    """Return once the work queued on `stream` so far is done."""
    done = gpu_event()
    done.record(stream)
    done.synchronize()
