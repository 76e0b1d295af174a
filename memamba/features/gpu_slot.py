"""One GPU per feature job on a multi-GPU node: each process locks a free card's slot file and uses it.

Snakemake's `resources: gpu=1` caps how many CUDA jobs run at once, but every job asking for plain
`cuda` would land on card 0. A job that holds the lock of `memamba-gpu-{i}.lock` (in the node's temporary
folder) for its lifetime owns card i; under SLURM each job sees only its own card, so this is a no-op.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_held: list[IO] = []


def claim_gpu(n_devices: int, lock_dir: Path | None = None) -> tuple[int, IO] | None:
    """(index, open lock file) of the first of `n_devices` cards no other process holds, or None.

    The card stays claimed until the returned file is closed (or the process ends).
    """
    folder = Path(lock_dir or tempfile.gettempdir())
    for index in range(n_devices):
        handle = (folder / f"memamba-gpu-{index}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return index, handle
    return None


def free_gpu_index(n_devices: int) -> int:
    """Index of a card this process now holds for its lifetime (0 when all are taken, with a warning)."""
    claimed = claim_gpu(n_devices)
    if claimed is None:
        logger.warning("all %d GPUs are claimed by other memamba jobs: sharing cuda:0", n_devices)
        return 0
    index, handle = claimed
    _held.append(handle)
    return index
