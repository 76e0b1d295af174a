"""Benchmark: a cohort's feature jobs, one `memamba features` process per slide against one per group.

`benchmarks/features.py` times passes inside one warm process; a workflow pays each job's fixed cost too
(Python and torch imports, building and compiling the encoder, starting the decoders). Here the features
rule's own command runs for N copies of a synthetic 40× SVS, first as N jobs one after another
(`features.slides_per_job: 1`), then as one job of N slides (`--slide S C O` repeated, what
`features.slides_per_job: N` runs). Reported per configuration: the wall time of each, the cohort's
patches/s and the ratio; and each slide's `seconds` attribute in the group job (its first slide includes
building the encoder). Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/feature_jobs.py [--slides 4] [--slide-size 40000] [--out jobs.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.features import publish
from benchmarks.two_gpus import synthetic_cohort
from memamba.features.features_h5 import read_features

CONFIGS = {
    "resnet50_trunc": ["--encoder", "resnet50_trunc", "--batch-size", "128"],
    "resnet50_trunc --compile": ["--encoder", "resnet50_trunc", "--batch-size", "128", "--compile"],
    "vit_large_patch16_224": ["--encoder", "vit_large_patch16_224", "--batch-size", "256"],
}


def run_job(triples: list[tuple[Path, Path, Path]], options: list[str], device: str) -> float:
    """Wall seconds of one `memamba features` process encoding `triples` (slide, coords, output)."""
    slides = [part for triple in triples for part in ("--slide", *map(str, triple))]
    command = [sys.executable, "-m", "memamba", "features", *slides, "--allow-random-weights", "--device", device]
    start = time.perf_counter()
    subprocess.run([*command, *options], check=True, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(triples: list[tuple[Path, Path, Path]], options: list[str], device: str) -> dict:
    """Wall seconds of a job per slide (one after another) and of one job for all; per-slide seconds."""
    per_slide = sum(run_job([triple], options, device) for triple in triples)
    grouped = run_job(triples, options, device)
    slide_seconds, patches = [], 0
    for _, _, output in triples:
        features, _, attrs = read_features(output)
        patches += len(features)
        slide_seconds.append(float(attrs["seconds"]))
    return {"per_slide": per_slide, "grouped": grouped, "patches": patches, "slide_seconds": slide_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=4, help="slides of the cohort (copies of one slide)")
    parser.add_argument("--slide-size", type=int, default=40000, help="side of the synthetic 40x slide (px)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        slides, coords = synthetic_cohort(folder, args.slides, args.slide_size)
        triples = [(slide, coords, folder / f"{slide.stem}.features.h5") for slide in slides]
        run_job(triples[:1], CONFIGS[args.configs[0]], args.device)  # warm-up: page cache, kernel caches
        results = {config: compare(triples, CONFIGS[config], args.device) for config in args.configs}
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    slide_patches = results[args.configs[0]]["patches"] // args.slides
    lines = [
        f"{device}; {os.cpu_count()} cores; {args.slides} slides of {slide_patches:,} patches;"
        " wall times of whole `memamba features` processes",
        "",
        "| configuration | a job per slide: wall (s) / patches/s | one job of all: wall (s) / patches/s | ratio"
        " | seconds per slide in the group job |",
        "|---|---|---|---|---|",
    ]
    for config, row in results.items():
        per_slide_rate, grouped_rate = row["patches"] / row["per_slide"], row["patches"] / row["grouped"]
        seconds = " / ".join(f"{value:.1f}" for value in row["slide_seconds"])
        lines.append(
            f"| {config} | {row['per_slide']:.1f} / {per_slide_rate:,.0f} | {row['grouped']:.1f} / {grouped_rate:,.0f}"
            f" | {row['per_slide'] / row['grouped']:.2f}× | {seconds} |"
        )
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
