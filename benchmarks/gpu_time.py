"""Benchmark: the GPU time a patch costs in the encoder and in the tiles reader, and the end-to-end rate
the GPU's time allows.

Under the CUDA profiler, one pass each of: the encoder alone on random uint8 batches already on the GPU
(eager at the end-to-end batch and at the ceiling batch, torch.compile at the end-to-end batch); the tiles
reader alone, planned for an eager and for a compiled encoder; and both end to end. For each: patches/s
under the profiler, and the time per patch during which the GPU ran kernels (the union of all kernel
intervals, every stream) and kernels or copies. nvJPEG's hardware engines are not kernels: what the
reader's row counts is its copies, nvJPEG's colour conversion, and the assembly and resize of patches.

Encoder and reader share the GPU's SMs, so no end to end can beat 1 / (encoder's kernel time + reader's
kernel time) per patch; the last rows give that bound. Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/gpu_time.py [--slide-size 40000] [--out gpu_time.md]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks.features import (
    CEILING_BATCH,
    MODEL_BATCH,
    PATCH_LEVEL0,
    encoder,
    patch_grid,
    reader_batches,
    write_synthetic_svs,
)
from memamba.features.extract import encode_patches
from memamba.features.registry import get_encoder_spec

ENCODER = "resnet50_trunc"
GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")


def busy_microseconds(trace: Path, categories: tuple[str, ...]) -> float:
    """µs during which at least one GPU activity of `categories` ran, from a chrome trace."""
    events = json.loads(trace.read_text())["traceEvents"]
    spans = sorted((event["ts"], event["ts"] + event["dur"]) for event in events if event.get("cat") in categories)
    busy, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy


def profiled(work: Callable[[], int], folder: Path) -> dict[str, float]:
    """patches/s of one `work()` pass (it returns its patches) under the CUDA profiler, and the µs per
    patch the GPU spent in kernels and in kernels or copies. `work` runs once before, untimed."""
    from torch.profiler import ProfilerActivity, profile

    work()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        start = time.perf_counter()
        patches = work()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    trace = folder / "trace.json"
    profiler.export_chrome_trace(str(trace))
    return {
        "rate": patches / seconds,
        "kernels": busy_microseconds(trace, ("kernel",)) / patches,
        "gpu": busy_microseconds(trace, GPU_WORK) / patches,
        "busy": busy_microseconds(trace, GPU_WORK) / 1e6 / seconds,
    }


def model_pass(device: torch.device, batch_size: int, compiled: bool, n_batches: int = 40) -> Callable[[], int]:
    """One pass of the encoder alone over `n_batches` random uint8 batches already on the GPU."""
    spec, model = get_encoder_spec(ENCODER), encoder(ENCODER)
    images = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8, device=device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(n_batches):
            yield images, torch.zeros(batch_size, dtype=torch.bool)

    def work() -> int:
        return len(encode_patches(model, spec, batches(), batch_size * n_batches, device, compile_model=compiled)[0])

    return work


def reader_pass(slide: Path, coords: np.ndarray, device: torch.device, compiled: bool) -> Callable[[], int]:
    """One pass of the tiles reader alone, its lanes planned for a `compiled` encoder or an eager one."""
    config = ("tiles", 0, os.cpu_count() or 1)

    def work() -> int:
        batches = reader_batches(slide, coords, device, config, MODEL_BATCH[ENCODER], 224, compiled)
        return sum(len(images) for images, _ in batches)

    return work


def end_to_end_pass(slide: Path, coords: np.ndarray, device: torch.device, compiled: bool) -> Callable[[], int]:
    """One pass of reading and encoding every patch, as `memamba features` does."""
    spec, model = get_encoder_spec(ENCODER), encoder(ENCODER)
    config = ("tiles", 0, os.cpu_count() or 1)

    def work() -> int:
        batches = reader_batches(slide, coords, device, config, MODEL_BATCH[ENCODER], 224, compiled)
        return len(encode_patches(model, spec, batches, len(coords), device, compile_model=compiled)[0])

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide-size", type=int, default=40000, help="side of the synthetic 40x slide (px)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    batch, ceiling_batch = MODEL_BATCH[ENCODER], CEILING_BATCH[ENCODER]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        slide = folder / "synthetic_40x.svs"
        write_synthetic_svs(slide, args.slide_size)
        coords = patch_grid(args.slide_size, args.slide_size, PATCH_LEVEL0)
        passes = {
            f"encoder alone, eager, batch {batch}": model_pass(device, batch, False),
            f"encoder alone, eager, batch {ceiling_batch}": model_pass(device, ceiling_batch, False),
            f"encoder alone, torch.compile, batch {batch}": model_pass(device, batch, True),
            "tiles reader alone, planned for an eager encoder": reader_pass(slide, coords, device, False),
            "tiles reader alone, planned for a compiled encoder": reader_pass(slide, coords, device, True),
            "end to end, eager": end_to_end_pass(slide, coords, device, False),
            "end to end, torch.compile": end_to_end_pass(slide, coords, device, True),
        }
        rows = {label: profiled(work, folder) for label, work in passes.items()}
    lines = [
        f"GPU: {torch.cuda.get_device_name(device)}, {os.cpu_count()} cores, torch {torch.__version__}; {ENCODER}; "
        f"synthetic slide {args.slide_size}² px, {len(coords):,} patches; one pass each under the CUDA profiler",
        "",
        "| pass | patches/s | GPU kernels, µs a patch | kernels or copies, µs a patch | GPU busy |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {row['rate']:,.0f} | {row['kernels']:.1f} | {row['gpu']:.1f} | {row['busy']:.0%} |"
        for label, row in rows.items()
    ]
    lines += ["", "| encoder + tiles reader | kernel time a patch | the most patches/s the GPU's time allows |"]
    lines += ["|---|---|---|"]
    for model, reader in (
        (f"encoder alone, eager, batch {batch}", "tiles reader alone, planned for an eager encoder"),
        (f"encoder alone, eager, batch {ceiling_batch}", "tiles reader alone, planned for an eager encoder"),
        (f"encoder alone, torch.compile, batch {batch}", "tiles reader alone, planned for a compiled encoder"),
    ):
        total, plan = rows[model]["kernels"] + rows[reader]["kernels"], reader.removeprefix("tiles reader alone, ")
        lines.append(f"| {model} + reader {plan} | {total:.1f} µs | {1e6 / total:,.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
