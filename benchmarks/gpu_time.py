"""Benchmark: the GPU time a patch costs in the encoder and in the tiles reader, and the end-to-end rate
the GPU's time allows.

Under the CUDA profiler, one pass each of: the encoder alone on random uint8 batches already on the GPU
(as built and as a features job runs it at the end-to-end batch, as a job runs it at the ceiling batch,
torch.compile at the end-to-end batch); the tiles reader alone, planned for an encoder run layer by layer
and for one replaying CUDA graphs; and both end to end. For each: patches/s
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
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.features import (
    CEILING_BATCH,
    MODEL_BATCH,
    PATCH_LEVEL0,
    end_to_end_pass,
    model_pass,
    patch_grid,
    publish,
    reader_pass,
    write_synthetic_svs,
)
from memamba.features.hardware_queues import widen_hardware_queues

ENCODER = "resnet50_trunc"
GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")


GRAPHED_READER = "tiles reader alone, planned for an encoder replaying CUDA graphs"


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
    kernels, gpu = busy_microseconds(trace, ("kernel",)), busy_microseconds(trace, GPU_WORK)
    return {"rate": patches / seconds, "kernels": kernels / patches, "gpu": gpu / patches, "busy": gpu / 1e6 / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide-size", type=int, default=40000, help="side of the synthetic 40x slide (px)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    widen_hardware_queues()  # as a features job does, before CUDA starts
    device = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    batch, ceiling_batch = MODEL_BATCH[ENCODER], CEILING_BATCH[ENCODER]
    config = ("tiles", 0, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        slide = folder / "synthetic_40x.svs"
        write_synthetic_svs(slide, args.slide_size)
        coords = patch_grid(args.slide_size, args.slide_size, PATCH_LEVEL0)
        passes = {
            f"encoder alone, as built, batch {batch}": model_pass(ENCODER, device, False, 40, batch, as_built=True),
            f"encoder alone, as a job runs it, batch {batch}": model_pass(ENCODER, device, False, 40, batch),
            f"encoder alone, as a job runs it, batch {ceiling_batch}": model_pass(
                ENCODER, device, False, 40, ceiling_batch
            ),
            f"encoder alone, torch.compile, batch {batch}": model_pass(ENCODER, device, True, 40, batch),
            "tiles reader alone, planned for an encoder run layer by layer": reader_pass(
                slide, coords, device, config, batch, graphed=False
            ),
            GRAPHED_READER: reader_pass(slide, coords, device, config, batch),
            "end to end, as a job runs the encoder": end_to_end_pass(ENCODER, slide, coords, device, config, batch),
            "end to end, torch.compile": end_to_end_pass(ENCODER, slide, coords, device, config, batch, True),
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
        (f"encoder alone, as built, batch {batch}", "tiles reader alone, planned for an encoder run layer by layer"),
        (f"encoder alone, as a job runs it, batch {batch}", GRAPHED_READER),
        (f"encoder alone, as a job runs it, batch {ceiling_batch}", GRAPHED_READER),
        (f"encoder alone, torch.compile, batch {batch}", GRAPHED_READER),
    ):
        total, plan = rows[model]["kernels"] + rows[reader]["kernels"], reader.removeprefix("tiles reader alone, ")
        lines.append(f"| {model} + reader {plan} | {total:.1f} µs | {1e6 / total:,.0f} |")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
