"""Atomic writes: every output appears complete under its final name, or not at all."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def _temporary_path(final: Path, pid: int) -> Path:
    return final.with_name(f".{final.stem}.tmp-{pid}{final.suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Delete temporary files of `final` left by writers that died (e.g. killed by SIGKILL); return them."""
    pattern = re.compile(rf"^\.{re.escape(final.stem)}\.tmp-(\d+){re.escape(final.suffix)}$")
    removed = []
    for candidate in final.parent.glob(f".{final.stem}.tmp-*"):
        match = pattern.match(candidate.name)
        if match and not _process_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
            log.warning("%s: removed a partial file left by a writer that died", candidate)
    return removed


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it to `path` on success.

    On any exception the temporary file is removed and `path` is left untouched. Parent folders are
    created, and partial files of earlier writers of `path` that died are removed first.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    temporary = _temporary_path(final, os.getpid())
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
