"""Benchmark: feature jobs for several slides at once on a multi-GPU node, one GPU per job.

What the workflow does on such a node (the features rule asks for `resources: gpu=1`, so Snakemake with
`--resources gpu=K` runs K feature jobs at once, each `memamba features … --device cuda`, and each job
claims a free card, memamba/features/gpu_slot.py): here the same shell command is started for one slide
alone, then for K slides at the same moment. Reported per job: the card it used (from its features
file), its start and end (seconds from the launch), patches/s; and the K-slide wall time against K × the
one-slide time. Slides are synthetic 40× Aperio SVS (benchmarks/features.py). Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/two_gpus.py [--slides 2] [--slide-size 40000] [--out two_gpus.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.features import PATCH_LEVEL0, patch_grid, publish, write_grid_coords, write_synthetic_svs
from memamba.features.features_h5 import read_features


def synthetic_cohort(folder: Path, n_slides: int, size: int) -> tuple[list[Path], Path]:
    """`n_slides` copies of one synthetic 40× SVS (`size`² px) in `folder`, and the coords h5 of their
    20× patch grid in the tiling stage's schema (256 px, 512 level-0 px, at 0.5 µm/px)."""
    slides = [folder / f"slide{index}.svs" for index in range(n_slides)]
    write_synthetic_svs(slides[0], size)
    for slide in slides[1:]:
        shutil.copyfile(slides[0], slide)
    coords = folder / "coords.h5"
    write_grid_coords(coords, patch_grid(size, size, PATCH_LEVEL0))
    return slides, coords


def launch(slides: list[Path], coords: Path, folder: Path, args: argparse.Namespace) -> list[dict]:
    """Start `memamba features` for every slide at once; (card, start, end, patches/s) of each job."""
    jobs, started = [], time.perf_counter()
    for slide in slides:
        out = folder / f"{slide.stem}.features.h5"
        out.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "memamba", "features", str(slide), str(coords), "-o", str(out),
            "--encoder", args.encoder, "--allow-random-weights", "--device", "cuda",
            "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers),
        ]  # fmt: skip
        jobs.append((out, time.perf_counter() - started, subprocess.Popen(command, env=os.environ.copy())))
    results = []
    for out, start, process in jobs:
        if process.wait() != 0:
            raise RuntimeError(f"memamba features for {out.name} failed with exit code {process.returncode}")
        end = time.perf_counter() - started
        features, _, attrs = read_features(out)
        results.append({"slide": out.name, "device": attrs["device"], "start": start, "end": end, "n": len(features)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=torch.cuda.device_count(), help="slides (jobs) at once")
    parser.add_argument("--slide-size", type=int, default=40000)
    parser.add_argument("--encoder", default="resnet50_trunc")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--num-workers", type=int, default=0, help="--num-workers of each job")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        slides, coords = synthetic_cohort(folder, args.slides, args.slide_size)
        launch(slides[:1], coords, folder, args)  # warm-up: page cache, kernel caches
        alone = launch(slides[:1], coords, folder, args)[0]
        together = launch(slides, coords, folder, args)
    lines = [
        f"GPUs: {torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}; {os.cpu_count()} cores; "
        f"{args.encoder}, batch {args.batch_size}, --num-workers {args.num_workers}; "
        f"{alone['n']:,} patches per slide; times in s from the launch, job start-up included",
        "",
        "| run | slide | card | start | end | patches/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in (("one slide alone", [alone]), (f"{args.slides} slides at once", together)):
        for row in rows:
            speed = row["n"] / (row["end"] - row["start"])
            lines.append(
                f"| {label} | {row['slide']} | {row['device']} | {row['start']:.1f} | {row['end']:.1f} | {speed:,.0f} |"
            )
    wall = max(row["end"] for row in together)
    cards = sorted({row["device"] for row in together})
    one_by_one = args.slides * alone["end"]
    lines += [
        "",
        f"{args.slides} slides on {len(cards)} distinct cards ({', '.join(cards)}) in {wall:.1f} s; one slide alone "
        f"{alone['end']:.1f} s, so one after another would take {one_by_one:.1f} s ({one_by_one / wall:.2f}×).",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
