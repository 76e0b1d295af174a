"""Benchmark: the OpenSlide reader's DataLoader workers reading small pieces joined into encoder batches,
against each worker reading whole encoder batches (the earlier behaviour), in the same run.

No model: `openslide_batches` alone on the CPU, on a synthetic 40× Aperio SVS (benchmarks/features.py),
20× patches of 512 level-0 px resized to 224. With whole batches, a slide with fewer batches than workers,
or the last wave of batches, leaves workers idle; memamba's workers read pieces (at least
`PIECES_PER_WORKER` per worker). Usage (any machine; `--workers` defaults to the cores):

    PYTHONPATH=. python3 benchmarks/openslide_pieces.py [--slide-size 8192] [--batches 64 96 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.features import PATCH_LEVEL0, READ_SIZE, patch_grid, write_synthetic_svs
from memamba.features import batches
from memamba.features.dataset import SlidePatchDataset


def patches_per_second(dataset: SlidePatchDataset, batch_size: int, workers: int, whole: bool) -> float:
    """patches/s of `openslide_batches` with workers reading whole batches or memamba's pieces (start-up
    included)."""
    saved = batches.piece_size
    if whole:
        batches.piece_size = lambda n_patches, batch_size, num_workers: batch_size
    try:
        start = time.perf_counter()
        read = batches.openslide_batches(dataset, torch.device("cpu"), batch_size, workers)
        count = sum(len(images) for images, _ in read)
        return count / (time.perf_counter() - start)
    finally:
        batches.piece_size = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide-size", type=int, default=8192, help="side of the synthetic 40x slide (px)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 96, 256], help="encoder batch sizes")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader worker processes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        slide = Path(folder) / "synthetic_40x.svs"
        write_synthetic_svs(slide, args.slide_size)
        coords = patch_grid(args.slide_size, args.slide_size, PATCH_LEVEL0)
        dataset = SlidePatchDataset(slide, coords, PATCH_LEVEL0, READ_SIZE, 224)
        print(
            f"{platform.node()}: {os.cpu_count()} cores, {args.workers} workers, torch {torch.__version__}; "
            f"{len(coords)} patches; median of {args.repeats}\n"
        )
        print("| encoder batch | whole batches per worker | pieces (patches each) | ratio |")
        print("|---|---|---|---|")
        for batch_size in args.batches:
            whole, pieces = [], []
            for _ in range(args.repeats):  # alternating, so that both see the same machine state
                whole.append(patches_per_second(dataset, batch_size, args.workers, whole=True))
                pieces.append(patches_per_second(dataset, batch_size, args.workers, whole=False))
            whole_rate, pieces_rate = sorted(whole)[len(whole) // 2], sorted(pieces)[len(pieces) // 2]
            piece = batches.piece_size(len(dataset), batch_size, args.workers)
            ratio = pieces_rate / whole_rate
            print(f"| {batch_size} | {whole_rate:,.0f} | {pieces_rate:,.0f} ({piece}) | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
