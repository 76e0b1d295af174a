"""libjpeg decoding in decode processes that write straight into host memory shared with this process.

libjpeg threads inside the encoder's process release the GIL while decoding, but each tile's Python
around libjpeg takes it back: at tens of thousands of tiles per second they contend with the encoder's
loop for the GIL. Decode processes have a GIL each; this process only sends each a slice of the batch's
tile numbers and copies the decoded tiles from pinned shared memory to the GPU.

Decode processes take a moment to start (Python, numpy, libjpeg), so they are kept for the life of this
process and lent to one decoder at a time; `start_decode_processes` starts them ahead of need.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import mmap
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memamba.features.cuda_waits import HostMemoryInUse
from memamba.features.decode_worker import DecodeFailure, DecodeRequest
from memamba.features.jpeg_decoders import checked_upsampling
from memamba.features.jpeg_tiles import JpegTiffPyramid

_MEMORY_NAMES = itertools.count()

OUTPUT_BUFFERS = 2
"""Output memories per decode process, used in turn: a lane's next batch decodes into one while the GPU
copies the last batch from the other (see `ProcessLibjpegDecoder.decode`'s `then`)."""


def processes_supported() -> bool:
    """Whether this system can share decode memory with processes (Linux memfd)."""
    return hasattr(os, "memfd_create") and Path(f"/proc/{os.getpid()}/fd").is_dir()


class SharedHostMemory:
    """`size` bytes of anonymous shared memory (a memfd) that decode processes open by `path`; pinned
    (page-locked for the GPU's copy engines) when `pin`."""

    def __init__(self, size: int, pin: bool) -> None:
        self.size = size
        self.descriptor = os.memfd_create("memamba-tiles")
        os.ftruncate(self.descriptor, size)
        self.path = f"/proc/{os.getpid()}/fd/{self.descriptor}"
        self.name = f"{os.getpid()}-{next(_MEMORY_NAMES)}"
        self._map = mmap.mmap(self.descriptor, size)
        self.tensor = torch.frombuffer(self._map, dtype=torch.uint8)
        self.pinned = False
        if pin:
            torch.cuda.check_error(torch.cuda.cudart().cudaHostRegister(self.tensor.data_ptr(), size, 0))
            self.pinned = True

    def close(self) -> None:
        """Unpin, unmap and free the memory (no copy from it may still be running)."""
        if self.pinned:
            torch.cuda.check_error(torch.cuda.cudart().cudaHostUnregister(self.tensor.data_ptr()))
            self.pinned = False
        del self.tensor
        self._map.close()
        os.close(self.descriptor)


class DecodeProcess:
    """One decode process (`memamba.features.decode_worker.main` in a fresh Python), its request pipe and
    the OUTPUT_BUFFERS shared memories it decodes into (kept, and mapped once, for the life of the process)."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # last on its path: it shadows nothing
        start = (
            f"import sys; sys.path.append({package_root!r}); from memamba.features.decode_worker import main; main()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", start],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self.memories: list[SharedHostMemory | None] = [None] * OUTPUT_BUFFERS

    def output(self, slot: int, size: int, pin: bool) -> SharedHostMemory:
        """This process's output memory `slot`: at least `size` bytes, pinned if `pin`; replaced (a quarter
        larger than asked) when smaller or unpinned. No copy from it may still be running."""
        memory = self.memories[slot]
        if memory is None or memory.size < size or (pin and not memory.pinned):
            if memory is not None:
                memory.close()
            memory = self.memories[slot] = SharedHostMemory(max(1, size + size // 4), pin)
        return memory

    def send(self, request: DecodeRequest | None) -> None:
        """Send a request (a process that has exited is reported by `receive`)."""
        try:
            pickle.dump(request, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass

    def receive(self) -> np.ndarray | str:
        """The bool [T] undecodable flags answering the last request, or why there are none."""
        try:
            answer = pickle.load(self.process.stdout)
        except EOFError:
            return f"decode process {self.process.pid} exited (code {self.process.wait(timeout=5)})"
        if isinstance(answer, DecodeFailure):
            return f"decode process {self.process.pid}: {answer.error}"
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None

    def finish_lane(self) -> bool:
        """Tell the process its lane is done (it closes the slide); whether it is ready for another lane.
        Answers left unread by an interrupted lane are skipped."""
        self.send(None)
        try:
            while (answer := pickle.load(self.process.stdout)) is not None:
                del answer
        except EOFError:
            return False
        return True

    def close(self) -> None:
        """End the process (it exits when its requests end) and free its memory."""
        with contextlib.suppress(BrokenPipeError):  # it has exited already
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        for memory in self.memories:
            if memory is not None:
                memory.close()
        self.memories = [None] * OUTPUT_BUFFERS


class _IdleProcesses:
    """Decode processes not lent to any decoder; ended when this process exits."""

    def __init__(self) -> None:
        self.processes: list[DecodeProcess] = []
        self.lock = threading.Lock()
        atexit.register(self.close)

    def lend(self, count: int) -> list[DecodeProcess]:
        """`count` live decode processes: the idle ones given back last first (their memory is sized for
        such lanes already), new ones as needed."""
        with self.lock:
            live = [process for process in self.processes if process.alive()]
            keep = max(0, len(live) - count)
            self.processes, lent = live[:keep], live[keep:]
        return lent + [DecodeProcess() for _ in range(count - len(lent))]

    def take_back(self, processes: list[DecodeProcess]) -> None:
        """Keep the processes that finish their lane cleanly; end the others."""
        for process in processes:
            if process.finish_lane():
                with self.lock:
                    self.processes.append(process)
            else:
                process.close()

    def start(self, count: int) -> None:
        """Start decode processes until `count` are idle, without waiting for them to be ready."""
        with self.lock:
            self.processes = [process for process in self.processes if process.alive()]
            self.processes += [DecodeProcess() for _ in range(count - len(self.processes))]

    def close(self) -> None:
        with self.lock:
            processes, self.processes = self.processes, []
        for process in processes:
            process.close()


_IDLE = _IdleProcesses()


def start_decode_processes(count: int) -> None:
    """Have at least `count` decode processes idle, starting them in the background: their start-up
    (a fraction of a second, all at once) then overlaps other work, such as building the encoder."""
    _IDLE.start(count)


@dataclass(frozen=True)
class _Submitted:
    """A batch of tiles sent to the decode processes: tiles `tile_ids` of `level` of `slide`, cut into
    `slices` (positions in `tile_ids`, one per process from the first), decoding into output `slot`."""

    slide: Path
    level: int
    tile_ids: np.ndarray
    slices: list[np.ndarray]
    slot: int

    def same(self, slide: Path, level: int, tile_ids: np.ndarray) -> bool:
        return self.slide == slide and self.level == level and np.array_equal(self.tile_ids, tile_ids)


class ProcessLibjpegDecoder:
    """libjpeg-turbo on `processes` decode processes lent to it: each decodes a slice of the batch into
    its own shared memory (pinned on CUDA), copied from there into one tensor on `device`. Output as
    `LibjpegDecoder`'s with the same upsampling.

    `decode(..., then=next_tile_ids)` sends the next batch to the processes before it waits for this
    one, so they decode it while the caller copies, assembles and hands over this one."""

    name = "libjpeg-processes"
    prefetches = True

    def __init__(self, device: torch.device, processes: int, upsampling: str = "fancy") -> None:
        self.device = torch.device(device)
        self.upsampling = checked_upsampling(upsampling)
        self.processes = max(1, processes)
        self._workers: list[DecodeProcess] | None = None
        self._copying = [HostMemoryInUse() for _ in range(OUTPUT_BUFFERS)]
        self._submitted: collections.deque[_Submitted] = collections.deque()
        self._slots = itertools.cycle(range(OUTPUT_BUFFERS))

    @property
    def workers(self) -> list[DecodeProcess]:
        """The decode processes lent to this decoder, at its first use rather than when it is built: the
        next slide's lanes are planned while this slide's still hold their processes."""
        if self._workers is None:
            self._workers = _IDLE.lend(self.processes)
        return self._workers

    def decode(
        self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray, then: np.ndarray | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """(uint8 [T, 3, h, w] on the device, bool [T] undecodable) of tiles `tile_ids` of `level`; with
        `then`, the tile ids the next call will ask for (of the same level), sent ahead."""
        ahead = self._submitted.popleft() if self._submitted else None
        if ahead is not None and not ahead.same(pyramid.path, level, tile_ids):
            self._collect(ahead, pyramid)  # sent ahead for a batch not asked for after all: dropped
            ahead = None
        current = ahead or self._submit(pyramid, level, tile_ids)
        if then is not None:
            self._submitted.append(self._submit(pyramid, level, then))
        return self._collect(current, pyramid)

    def _submit(self, pyramid: JpegTiffPyramid, level: int, tile_ids: np.ndarray) -> _Submitted:
        """Send tiles `tile_ids` to the processes, into the next output slot once the GPU has copied it."""
        layout = pyramid.levels[level]
        tile_bytes = layout.tile_height * layout.tile_width * 3
        slot = next(self._slots)
        self._copying[slot].wait()  # the slot's memory is written again below
        slices = [part for part in np.array_split(np.arange(len(tile_ids)), len(self.workers)) if len(part)]
        for worker, part in zip(self.workers, slices, strict=False):
            memory = worker.output(slot, len(part) * tile_bytes, pin=self.device.type == "cuda")
            worker.send(
                DecodeRequest(
                    slide=pyramid.path,
                    level=level,
                    tile_ids=np.asarray(tile_ids[part]),
                    memory=memory.name,
                    memory_path=memory.path,
                    memory_size=memory.size,
                    replicate_chroma=self.upsampling == "replicate",
                )
            )
        return _Submitted(pyramid.path, level, np.asarray(tile_ids).copy(), slices, slot)

    def _collect(self, submitted: _Submitted, pyramid: JpegTiffPyramid) -> tuple[torch.Tensor, np.ndarray]:
        """Wait for the processes' answers to `submitted` and copy its tiles to the device."""
        layout = pyramid.levels[submitted.level]
        tile_shape = (layout.tile_height, layout.tile_width, 3)
        tile_bytes = int(np.prod(tile_shape))
        answers = [worker.receive() for worker, _ in zip(self.workers, submitted.slices, strict=False)]
        for answer in answers:
            if isinstance(answer, str):
                raise RuntimeError(f"{pyramid.path}: {answer}")
        on_cuda = self.device.type == "cuda"
        tiles = torch.empty((len(submitted.tile_ids), *tile_shape), dtype=torch.uint8, device=self.device)
        for worker, part in zip(self.workers, submitted.slices, strict=False):
            memory = worker.memories[submitted.slot]
            decoded = memory.tensor[: len(part) * tile_bytes].view(len(part), *tile_shape)
            tiles[int(part[0]) : int(part[-1]) + 1].copy_(decoded, non_blocking=on_cuda)
        if on_cuda:
            self._copying[submitted.slot].mark()
        bad = np.concatenate(answers) if answers else np.zeros(0, dtype=bool)
        return tiles.permute(0, 3, 1, 2), bad

    def close(self) -> None:
        """Give the decode processes back (answers to batches sent ahead and never asked for are dropped)."""
        for copying in self._copying:
            copying.wait()
        self._submitted.clear()
        _IDLE.take_back(self._workers or [])
        self._workers = []
