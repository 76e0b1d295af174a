"""The encoder's loop: uint8 patch batches in, features out, keeping the GPU fed beside the reader threads."""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from memamba.features.batches import Batch
from memamba.features.captured_encoder import replays_cuda_graphs
from memamba.features.cuda_waits import gpu_event
from memamba.features.registry import EncoderSpec

logger = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL = 5e-4
"""Seconds a thread may hold the GIL while others wait for it, during encoding on CUDA (Python's default:
5 ms). The encoder's loop and the reader threads each take the GIL back after every kernel launch or
tile; a shorter interval made resnet50_trunc end to end 8-10 % faster on H200s (benchmarks/RESULTS.md)."""
GIL_SWITCH_INTERVAL_GRAPHED = 5e-3
"""The same for an encoder replaying a CUDA graph a batch (torch.compile on CUDA, or a CapturedEncoder),
whose loop takes the GIL back a few times a batch. H200, resnet50_trunc: torch.compile in its default mode
was 4-7 % faster at Python's default of 5 ms than at 0.5 ms in 3 of 3 rounds (benchmarks/RESULTS.md, tenth
pass); with CUDA graphs (COMPILE_MODE_CUDA), 0.5 ms was 0.94-1.02x (twelfth pass); a CapturedEncoder's
jobs of 6 slides 1.04 / 1.03 / 0.94x at 5 ms against 0.5 ms, one slide 0.96 / 0.95 / 1.10x (fourteenth
pass)."""
COMPILE_MODE_CUDA = "reduce-overhead"
"""torch.compile's mode on CUDA: Inductor's kernels replayed as one CUDA graph a batch. Each torch call
releases the GIL and takes it back, and while reader lanes run the loop waits for it every time; one replay
a batch instead of a launch per kernel made resnet50_trunc end to end 1.05-1.09x faster than the default
mode in 3 of 3 rounds, with features equal bit for bit (H200; benchmarks/RESULTS.md, twelfth pass)."""
OWN_STREAM_EAGER = True
"""On CUDA, run an eager encoder on a CUDA stream of its own, not on the legacy default stream (which
synchronises with every blocking stream). resnet50_trunc, round robins x3 on two H200s: nvJPEG's call beside
it 17.5 against 25.1 ms a batch on one machine (19.0 against 19.8 on the other); one slide 1.13 / 1.03 / 1.00x and
1.10 / 1.02 / 1.20x, jobs of 6 slides 1.04 / 1.21 / 1.15x and 0.99 / 1.05 / 1.22x. A compiled encoder stays
on the default stream: 0.91-1.07x there, and its CUDA graphs are recorded on a stream of torch's pool that
its own stream might be (benchmarks/RESULTS.md, thirteenth pass)."""
MAX_BATCHES_IN_FLIGHT = 2
"""Batches queued on the GPU before the encoder's loop waits (releasing the GIL) for the oldest: a loop
that never waits holds the GIL while the launch queue is full and starves the reader threads."""


def encode_patches(
    model: torch.nn.Module,
    spec: EncoderSpec,
    batches: Iterable[Batch],
    n_patches: int,
    device: torch.device,
    *,
    compile_model: bool = False,
    label: str = "",
) -> tuple[np.ndarray, int]:
    """(features float32 [N, D], number of blank patches) of the uint8 `batches` ([B, 3, S, S], blank [B]).

    Batches are normalised on `device` (x / 255 − mean) / std, fed channels-last to CNNs, and with
    `compile_model` through torch.compile (the last batch padded to the first one's size, so one graph;
    on CUDA in COMPILE_MODE_CUDA). On CUDA at most MAX_BATCHES_IN_FLIGHT batches are queued ahead of the GPU,
    and an eager encoder (a CapturedEncoder too) runs on a stream of its own (OWN_STREAM_EAGER).
    """
    with _encoder_stream(device, compile_model):
        return _encode(model, spec, batches, n_patches, device, compile_model, label)


def _encode(
    model: torch.nn.Module,
    spec: EncoderSpec,
    batches: Iterable[Batch],
    n_patches: int,
    device: torch.device,
    compile_model: bool,
    label: str,
) -> tuple[np.ndarray, int]:
    """`encode_patches` on the current CUDA stream."""
    mean, std = spec.normalization()
    mean_255 = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_255 = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    graphed = compile_model and device.type == "cuda"
    forward = torch.compile(model, mode=COMPILE_MODE_CUDA if graphed else None) if compile_model else model
    features = torch.empty((n_patches, spec.output_dim), dtype=torch.float32, device=device)
    row, blank, full_size = 0, 0, None
    in_flight: collections.deque = collections.deque()
    start, waited = time.perf_counter(), 0.0
    batch_iterator = iter(batches)
    replays_graphs = replays_cuda_graphs(model, compile_model, device)
    with torch.inference_mode(), _autocast(spec, device), _gil_switch_interval(device, replays_graphs):
        while True:
            asked = time.perf_counter()
            next_batch = next(batch_iterator, None)
            waited += time.perf_counter() - asked
            if next_batch is None:
                break
            images, blank_flags = next_batch
            count = len(images)
            full_size = full_size or count
            images = images.to(device, non_blocking=True)
            if compile_model and count < full_size:
                images = torch.cat([images, images[-1:].expand(full_size - count, -1, -1, -1)])
            batch = ((images.float() - mean_255) / std_255).contiguous(memory_format=memory_format)
            if graphed:
                torch.compiler.cudagraph_mark_step_begin()  # the last replay's output is copied already
            output = forward(batch)[:count]
            if output.shape != (count, spec.output_dim):
                raise RuntimeError(f"encoder {spec.name} gave {tuple(output.shape)}, expected [*, {spec.output_dim}]")
            features[row : row + count] = output.float()
            row += count
            blank += int(blank_flags.sum())
            if device.type == "cuda":
                in_flight.append(gpu_event())
                in_flight[-1].record()
                if len(in_flight) > MAX_BATCHES_IN_FLIGHT:
                    in_flight.popleft().synchronize()
    features = features[:row].cpu().numpy()
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d patches with %s on %s in %.1f s (%.1f patches/s; %.0f %% of it waiting for the reader)",
        label,
        row,
        spec.name,
        device,
        seconds,
        row / max(seconds, 1e-9),
        100 * waited / max(seconds, 1e-9),
    )
    if blank:
        logger.warning("%s: %d of %d patches could not be read and are blank", label, blank, row)
    return features, blank


@contextlib.contextmanager
def _encoder_stream(device: torch.device, compiled: bool) -> Iterator[None]:
    """On CUDA with an eager encoder (OWN_STREAM_EAGER), the block runs on a new stream of torch's pool that
    first waits for the work queued so far (the model's weights moved to the device); otherwise as it is."""
    if device.type != "cuda" or compiled or not OWN_STREAM_EAGER:
        yield
        return
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        yield


@contextlib.contextmanager
def _gil_switch_interval(device: torch.device, graphed: bool) -> Iterator[None]:
    """Python's GIL switch interval set on CUDA while the block runs: GIL_SWITCH_INTERVAL, or
    GIL_SWITCH_INTERVAL_GRAPHED for a `graphed` encoder (one replaying a CUDA graph a batch)."""
    previous = sys.getswitchinterval()
    if device.type == "cuda":
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_GRAPHED if graphed else GIL_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _autocast(spec: EncoderSpec, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to the encoder's precision on CUDA; nothing (float32) elsewhere."""
    if device.type != "cuda" or spec.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, spec.precision))
