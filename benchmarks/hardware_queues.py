"""Benchmark: CUDA's hardware queues (CUDA_DEVICE_MAX_CONNECTIONS) under nvJPEG beside the encoder.

CUDA reads the variable once, when it starts in a process, so each setting runs in a process of its own:
- "8": CUDA's default, set explicitly (memamba keeps a user's setting);
- "32 (environment)": set before the process starts;
- "32 (memamba)": unset at the start; the process calls `widen_hardware_queues()` before any CUDA
  call, as a features job does (`extract_slides`).

Each process measures (resnet50_trunc as a features job runs it: cuDNN's fused kernels replayed as one
CUDA graph a batch of 128; the synthetic 40,000² slide of benchmarks/features.py, 6,084 patches):
- nvJPEG's batched call of 1,024 tiles as the GPU lanes make it, alone and beside the encoder replaying
  back to back on a stream of its own (ms, median of 5), and the encoder's rate meanwhile;
- the decode ceiling: nvJPEG from 2 threads and libjpeg on the cores left, at once (patches/s);
- one slide end to end (median of 3 passes), and a job of 6 slides read one ahead (median of 3 jobs).
Settings alternate, `--rounds` times. Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/hardware_queues.py [--rounds 2] [--out hardware_queues.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.features import (
    PATCH_LEVEL0,
    combined_decode_ceiling,
    end_to_end,
    job_encoder,
    job_of_slides,
    patch_grid,
    publish,
    write_synthetic_svs,
)
from memamba.features import tile_lanes
from memamba.features.batches import lane_stream
from memamba.features.cuda_waits import gpu_event, wait_for_stream
from memamba.features.decode_processes import start_decode_processes
from memamba.features.encoding import MAX_BATCHES_IN_FLIGHT
from memamba.features.hardware_queues import VARIABLE, widen_hardware_queues
from memamba.features.jpeg_tiles import JpegTiffPyramid

SETTINGS = ("8", "32 (environment)", "32 (memamba)")
TILES_A_CALL = 1024
CALLS = 5


def environment(setting: str) -> dict[str, str]:
    """This process's environment with `setting`'s CUDA_DEVICE_MAX_CONNECTIONS (none for memamba's)."""
    env = {key: value for key, value in os.environ.items() if key != VARIABLE}
    if setting != "32 (memamba)":
        env[VARIABLE] = setting.split()[0]
    return env


def measure(setting: str, slide: Path) -> dict[str, float]:
    """A setting's measurements, in this process (started with `environment(setting)`)."""
    widened = widen_hardware_queues()  # before any CUDA call in this process
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    pyramid = JpegTiffPyramid(slide)
    tile_ids = np.arange(TILES_A_CALL)
    decoder, stream = tile_lanes.gpu_decoder(device), lane_stream(device)

    def call_ms() -> float:
        with torch.cuda.stream(stream):
            start = time.perf_counter()
            decoder.decode(pyramid, 0, tile_ids)
            wait_for_stream(stream)
        return 1e3 * (time.perf_counter() - start)

    for _ in range(2):
        call_ms()
    alone = statistics.median(call_ms() for _ in range(CALLS))
    model = job_encoder("resnet50_trunc", device, 128)
    batch = torch.rand(128, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    stop, encoded = threading.Event(), [0]

    def encode_back_to_back() -> None:
        in_flight = []
        with torch.inference_mode(), torch.cuda.stream(torch.cuda.Stream(device)):
            while not stop.is_set():
                model(batch)
                in_flight.append(gpu_event())
                in_flight[-1].record()
                if len(in_flight) > MAX_BATCHES_IN_FLIGHT:
                    in_flight.pop(0).synchronize()
                encoded[0] += len(batch)

    encoding = threading.Thread(target=encode_back_to_back)
    encoding.start()
    time.sleep(0.5)
    before, start = encoded[0], time.perf_counter()
    beside = statistics.median(call_ms() for _ in range(CALLS))
    encoder_rate = (encoded[0] - before) / (time.perf_counter() - start)
    stop.set()
    encoding.join()
    decoder.close()
    cores = os.cpu_count() or 1
    start_decode_processes(cores - tile_lanes.THREADS_KEPT)
    on_gpu, on_cpu = combined_decode_ceiling(
        pyramid, np.arange(8192), device, cores - tile_lanes.THREADS_KEPT, True, 2, True
    )
    coords = patch_grid(40000, 40000, PATCH_LEVEL0)
    config = ("tiles", 0, cores)
    return {
        "widened": float(widened),
        "nvjpeg_alone_ms": alone,
        "nvjpeg_beside_ms": beside,
        "encoder_beside": encoder_rate,
        "ceiling": (on_gpu + on_cpu) / 4,
        "one_slide": end_to_end("resnet50_trunc", slide, coords, device, config, 128),
        "job": job_of_slides("resnet50_trunc", slide, coords, 6, device, 128, compiled=False),
    }


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: each setting's medians over the rounds, and its rates against the "8" setting's."""
    medians = {
        setting: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for setting, runs in results.items()
    }
    base = medians["8"]
    lines = [
        "| setting | nvJPEG call, 1,024 tiles: alone / beside the encoder (ms) | encoder beside it (img/s) "
        "| decode ceiling | one slide | job of 6 slides |",
        "|---|---|---|---|---|---|",
    ]
    for setting, m in medians.items():
        ratio = "" if setting == "8" else f" ({m['one_slide'] / base['one_slide']:.2f}×)"
        job_ratio = "" if setting == "8" else f" ({m['job'] / base['job']:.2f}×)"
        lines.append(
            f"| {setting} | {m['nvjpeg_alone_ms']:.0f} / {m['nvjpeg_beside_ms']:.0f} | {m['encoder_beside']:,.0f} "
            f"| {m['ceiling']:,.0f} | {m['one_slide']:,.0f} ({m['one_slide'] / m['ceiling']:.0%}){ratio} "
            f"| {m['job']:,.0f} ({m['job'] / m['ceiling']:.0%}){job_ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each setting runs, alternating")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--slide", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.slide)), flush=True)
        return
    results: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory() as folder:
        slide = Path(folder) / "synthetic_40x.svs"
        write_synthetic_svs(slide, 40000)
        for round_number in range(args.rounds):
            for setting in SETTINGS:
                command = [sys.executable, __file__, "--child", setting, "--slide", str(slide)]
                done = subprocess.run(command, env=environment(setting), capture_output=True, text=True, check=True)
                results[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {round_number} {setting}: {results[setting][-1]}", flush=True)
    header = f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} cores, torch {torch.__version__}, {args.rounds} rounds"
    publish(header + "\n\n" + table(results), args.out)


if __name__ == "__main__":
    main()
