"""How many hardware work queues CUDA gives this process's streams (`CUDA_DEVICE_MAX_CONNECTIONS`).

CUDA feeds a process's streams to each GPU through a fixed number of hardware queues, 8 by default.
Streams sharing a queue run in that queue's order, whatever their priority. nvJPEG's batched decode waits
on the GPU once per tile, on internal streams of its own. Where one of them shares a queue with the
encoder's stream, every tile waits for the encoder's queued kernels. On an H100, one call of 1,024 tiles
beside the captured encoder replaying back to back took about 500 ms with 8 queues, and 45 ms with 32,
as fast as alone (benchmarks/RESULTS.md, fifteenth pass).

The CUDA driver reads the variable when it starts in a process, which `torch.cuda.is_available()`
already does, so it must be set before any CUDA call.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

QUEUES = 32
"""Hardware queues asked for: the most CUDA gives."""
VARIABLE = "CUDA_DEVICE_MAX_CONNECTIONS"
_NOT_INITIALIZED = 3
"""CUDA_ERROR_NOT_INITIALIZED: the driver's answer to any call before it has started."""


def widen_hardware_queues() -> bool:
    """Ask CUDA for QUEUES hardware queues a GPU, unless `CUDA_DEVICE_MAX_CONNECTIONS` is set already (a
    user's setting is kept) or the CUDA driver has started in this process (a warning says so). Returns
    whether this process runs with QUEUES queues."""
    if VARIABLE in os.environ:
        kept = os.environ[VARIABLE].strip()
        if kept != str(QUEUES):
            logger.info("%s=%s from the environment is kept (memamba would ask for %d)", VARIABLE, kept, QUEUES)
        return kept == str(QUEUES)
    if driver_started():
        logger.warning(
            "CUDA started before memamba could set %s=%d: nvJPEG's decoding may wait behind the encoder's "
            "kernels (set it in the environment)",
            VARIABLE,
            QUEUES,
        )
        return False
    os.environ[VARIABLE] = str(QUEUES)
    return True


def driver_started() -> bool:
    """Whether the CUDA driver has started in this process: until it has, it answers every call with
    CUDA_ERROR_NOT_INITIALIZED. False where there is no driver."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int()
    return driver.cuDeviceGetCount(ctypes.byref(count)) != _NOT_INITIALIZED
