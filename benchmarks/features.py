"""Benchmark: feature extraction against its ceilings and a CLAM-style baseline, all in one run.

Measures, on one GPU machine and in one process (patches/s unless stated):
(a) model-only ceilings: random uint8 batches already on the GPU, normalised and encoded (bf16 autocast,
    channels_last for CNNs; optionally torch.compile);
(b) reader ceilings: OpenSlide `SlidePatchDataset` on all CPU cores (no model); raw-tile JPEG decode by
    libjpeg on the CPU (tiles/s, one thread and all cores); nvJPEG on the GPU (tiles/s), and the whole
    decode-on-GPU reader (bytes, nvJPEG, assembly, resize; no model);
(c) end to end (`encode_patches` over each reader) for resnet50_trunc and vit_large_patch16_224 on a
    synthetic 40× Aperio SVS with 256-px JPEG tiles and on the real CMU-1-Small-Region slide; and the
    CLAM-style baseline: fp32, no autocast, one OpenSlide handle shared by 8 forked workers, CPU
    normalisation, batch 256.

Patches are 20× (512 level-0 px of the 40× slide) resized to 224. Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/features.py --slide-size 40000 [--compile] [--out results.md]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from memamba.features.batches import openslide_batches, tile_batches
from memamba.features.dataset import SlidePatchDataset
from memamba.features.extract import encode_patches
from memamba.features.jpeg_tiles import JpegTiffPyramid
from memamba.features.registry import build_encoder, get_encoder_spec
from memamba.features.tile_reader import TilePatchReader

CMU = Path(__file__).resolve().parents[1] / "tests" / "data" / "slides" / "cmu-1-small-region.svs"
TILE = 256
PATCH_LEVEL0 = 512
READ_SIZE = 256
ENCODERS = ("resnet50_trunc", "vit_large_patch16_224")
MODEL_BATCH = {"resnet50_trunc": 512, "vit_large_patch16_224": 256}


def write_synthetic_svs(path: Path, size: int, quality: int = 90) -> None:
    """A `size`² px 40× Aperio SVS (levels 1, 4, 16) of 256-px JPEG tiles (YCbCr 4:2:0) repeating the
    64 tiles of a 2048² region of CMU-1-Small-Region; tiles are encoded once, so writing is fast."""
    import openslide
    import tifffile
    from torchvision.io import encode_jpeg

    from memamba.demo.svs import aperio_description

    with openslide.OpenSlide(CMU) as slide:
        region = np.array(slide.read_region((100, 400), 0, (2048, 2048)).convert("RGB"))
    base = torch.from_numpy(region).permute(2, 0, 1).contiguous()
    tiles = [
        encode_jpeg(base[:, row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE], quality=quality)
        .numpy()
        .tobytes()
        for row in range(8)
        for col in range(8)
    ]
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for downsample in (1, 4, 16):
            width = height = size // downsample
            across, down = -(-width // TILE), -(-height // TILE)
            writer.write(
                (tiles[(row % 8) * 8 + col % 8] for row in range(down) for col in range(across)),
                shape=(height, width, 3),
                dtype="uint8",
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="ycbcr",
                subsampling=(2, 2),
                description=aperio_description(
                    (width, height),
                    (size, size),
                    tile_size=TILE,
                    quality=quality,
                    mpp=0.25,
                    app_mag=40,
                    properties={},
                ),
                subfiletype=0,
                metadata=None,
                software=False,
            )


def patch_grid(width: int, height: int, step: int) -> np.ndarray:
    """Level-0 top-left corners [N, 2] of a non-overlapping grid of `step`-px patches inside the slide."""
    xs, ys = np.arange(0, width - step + 1, step), np.arange(0, height - step + 1, step)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.int64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(work: Callable[[], int], device: torch.device, repeats: int = 3) -> float:
    """Median items/s of `work()` (which returns how many items it processed) over `repeats` runs."""
    rates = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        count = work()
        synchronize(device)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


@functools.cache
def encoder(name: str) -> torch.nn.Module:
    """The random-weight encoder `name`, built once per run."""
    return build_encoder(get_encoder_spec(name), None, allow_random_weights=True)[0]


def model_ceiling(name: str, device: torch.device, compiled: bool, n_batches: int = 20) -> float:
    """img/s of the encoder alone on random uint8 batches already on the GPU (normalisation included)."""
    spec, model = get_encoder_spec(name), encoder(name)
    batch_size = MODEL_BATCH[name] if device.type == "cuda" else 8
    n_batches = n_batches if device.type == "cuda" else 2
    images = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8, device=device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(n_batches):
            yield images, torch.zeros(batch_size, dtype=torch.bool)

    def work() -> int:
        encode_patches(model, spec, batches(), batch_size * n_batches, device, compile_model=compiled)
        return batch_size * n_batches

    work()  # warm-up (and compilation)
    return rate(work, device)


def openslide_ceiling(slide: Path, coords: np.ndarray, workers: int) -> float:
    """patches/s of the OpenSlide reader on `workers` processes, no model (worker start-up included)."""
    dataset = SlidePatchDataset(slide, coords, PATCH_LEVEL0, READ_SIZE, 224)
    cpu = torch.device("cpu")
    return rate(lambda: sum(len(images) for images, _ in openslide_batches(dataset, cpu, 64, workers)), cpu, 1)


def cpu_decode_ceiling(streams: list[torch.Tensor], threads: int) -> float:
    """tiles/s of libjpeg (torchvision, CPU) over `streams` on `threads` threads."""
    from torchvision.io import decode_jpeg

    chunks = [streams[index::threads] for index in range(threads)]

    def decode(chunk: list[torch.Tensor]) -> int:
        return sum(1 for stream in chunk if decode_jpeg(stream) is not None)

    with ThreadPoolExecutor(threads) as pool:
        return rate(lambda: sum(pool.map(decode, chunks)), torch.device("cpu"), repeats=1)


def gpu_decode_ceiling(streams: list[torch.Tensor], device: torch.device, threads: int, batch: int = 1024) -> float:
    """tiles/s of nvJPEG (torchvision.io.decode_jpeg on CUDA) in batches of `batch` tiles, from `threads`
    threads at once."""
    from torchvision.io import decode_jpeg

    def decode(offset: int) -> int:
        for start in range(offset * batch, len(streams), batch * threads):
            decode_jpeg(streams[start : start + batch], device=device)
        return 0

    with ThreadPoolExecutor(threads) as pool:

        def work() -> int:
            list(pool.map(decode, range(threads)))
            return len(streams)

        work()
        return rate(work, device)


def tile_reader_ceiling(
    slide: Path, coords: np.ndarray, device: torch.device, batch_size: int, cpu_share: float
) -> float:
    """patches/s of the decode-on-device reader alone (bytes, decode, assembly, resize), prefetched."""
    fallback = SlidePatchDataset(slide, coords, PATCH_LEVEL0, READ_SIZE, 224)

    def work() -> int:
        reader = TilePatchReader(
            JpegTiffPyramid(slide), coords, PATCH_LEVEL0, READ_SIZE, 224, device, cpu_decode_share=cpu_share
        )
        return sum(len(images) for images, _ in tile_batches(reader, fallback, batch_size))

    work()
    return rate(work, device)


def end_to_end(
    name: str,
    slide: Path,
    coords: np.ndarray,
    device: torch.device,
    reader: str,
    batch_size: int,
    workers: int,
    cpu_share: float = 0.0,
) -> float:
    """patches/s of reading + encoding every patch (features on the host), memamba's fast settings;
    OpenSlide worker start-up included (run once, after the page cache is warm)."""
    spec, model = get_encoder_spec(name), encoder(name)
    dataset = SlidePatchDataset(slide, coords, PATCH_LEVEL0, READ_SIZE, spec.input_size)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if reader == "tiles":
            tiles = TilePatchReader(
                JpegTiffPyramid(slide), coords, PATCH_LEVEL0, READ_SIZE, spec.input_size, device, cpu_share
            )
            return tile_batches(tiles, dataset, batch_size)
        return openslide_batches(dataset, device, batch_size, workers)

    def work() -> int:
        features, _ = encode_patches(model, spec, batches(), len(coords), device)
        return len(features)

    if reader == "openslide":
        return rate(work, device, repeats=1)
    work()
    return rate(work, device, repeats=2)


class SharedHandleDataset(torch.utils.data.Dataset):
    """CLAM's pattern: one OpenSlide handle opened in the main process and inherited by forked workers;
    PIL resize and float normalisation on the CPU."""

    def __init__(self, slide: Path, coords: np.ndarray, mean: tuple, std: tuple) -> None:
        import openslide

        self.slide = openslide.OpenSlide(slide)
        self.coords = coords
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        x, y = (int(value) for value in self.coords[index])
        image = self.slide.read_region((x, y), 0, (PATCH_LEVEL0, PATCH_LEVEL0)).convert("RGB")
        image = image.resize((224, 224), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        return (tensor - self.mean) / self.std


def clam_baseline(name: str, slide: Path, coords: np.ndarray, device: torch.device) -> float:
    """patches/s of the CLAM-style loop: fp32, no autocast, shared handle, batch 256, 8 workers."""
    spec = get_encoder_spec(name)
    model = encoder(name).to(device, memory_format=torch.contiguous_format)
    mean, std = spec.normalization()
    loader = torch.utils.data.DataLoader(SharedHandleDataset(slide, coords, mean, std), batch_size=256, num_workers=8)

    def work() -> int:
        count = 0
        with torch.inference_mode():
            for batch in loader:
                model(batch.to(device)).cpu()
                count += len(batch)
        return count

    return rate(work, device, repeats=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide-size", type=int, default=40000, help="side of the synthetic 40x slide (px)")
    parser.add_argument("--baseline-patches", type=int, default=2048, help="patches for the CLAM-style baseline")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd model ceilings")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="OpenSlide reader processes")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run)")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--cpu-shares", nargs="+", type=float, default=[0.0, 1.0], help="CPU decode shares to try")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    rows: list[tuple[str, str, float, str]] = []

    def add(what: str, slide: str, value: float, note: str = "") -> None:
        rows.append((what, slide, value, note))
        print(f"{what:60s} {slide:10s} {value:10.0f} {note}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        synthetic = Path(folder) / "synthetic_40x.svs"
        start = time.perf_counter()
        write_synthetic_svs(synthetic, args.slide_size)
        print(f"synthetic slide {args.slide_size}² written in {time.perf_counter() - start:.1f} s", flush=True)
        coords = patch_grid(args.slide_size, args.slide_size, PATCH_LEVEL0)
        cmu_coords = patch_grid(2220, 2967, 256)
        pyramid = JpegTiffPyramid(synthetic)
        streams = [
            torch.frombuffer(bytearray(data), dtype=torch.uint8)
            for data in pyramid.tile_streams(0, np.arange(min(8192, len(pyramid.levels[0].offsets))))
        ]

        ceilings = {}
        for name in args.encoders:
            ceilings[name] = model_ceiling(name, device, compiled=False)
            add(f"(a) model only {name}, bf16", "-", ceilings[name], "img/s")
            if args.compile:
                add(f"(a) model only {name}, bf16, torch.compile", "-", model_ceiling(name, device, True), "img/s")
        openslide_rate = openslide_ceiling(synthetic, coords, args.workers)
        add(f"(b) OpenSlide reader, {args.workers} processes", "synthetic", openslide_rate, "patches/s")
        add("(b) libjpeg decode of raw tiles, 1 thread", "synthetic", cpu_decode_ceiling(streams[:1024], 1), "tiles/s")
        cores = os.cpu_count()
        add(
            f"(b) libjpeg decode of raw tiles, {cores} threads",
            "synthetic",
            cpu_decode_ceiling(streams, cores),
            "tiles/s",
        )
        if device.type == "cuda":
            for threads in (1, 2, 4):
                nvjpeg = gpu_decode_ceiling(streams, device, threads)
                add(
                    f"(b) nvJPEG decode of raw tiles, batches of 1024, {threads} thread(s)",
                    "synthetic",
                    nvjpeg,
                    "tiles/s",
                )
        decode_rates = {}
        for share in args.cpu_shares:
            decode_rates[share] = tile_reader_ceiling(synthetic, coords, device, 256, share)
            add(f"(b) tiles reader alone, CPU share {share}", "synthetic", decode_rates[share], "patches/s")
        decode_rate = max(decode_rates.values())

        for name in args.encoders:
            batch = MODEL_BATCH[name] if device.type == "cuda" else 16
            bound = min(ceilings[name], decode_rate)
            fast_by_share = {}
            for share in args.cpu_shares:
                fast_by_share[share] = end_to_end(name, synthetic, coords, device, "tiles", batch, args.workers, share)
                speed = fast_by_share[share]
                note = f"{speed / bound:.0%} of min(model, decode); {speed / ceilings[name]:.0%} of model"
                add(f"(c) {name} end to end, tiles reader, CPU share {share}", "synthetic", speed, note)
            best_share = max(fast_by_share, key=fast_by_share.get)
            fast = fast_by_share[best_share]
            slow = end_to_end(name, synthetic, coords, device, "openslide", batch, args.workers)
            add(
                f"(c) {name} end to end, OpenSlide reader ({args.workers} proc.)",
                "synthetic",
                slow,
                f"{slow / min(ceilings[name], openslide_rate):.0%} of min(model, OpenSlide)",
            )
            baseline = clam_baseline(name, synthetic, coords[: args.baseline_patches], device)
            add(
                f"(c) {name} CLAM-style baseline",
                "synthetic",
                baseline,
                f"tiles reader (share {best_share}) {fast / baseline:.1f}x",
            )
            for reader in ("tiles", "openslide"):
                real = end_to_end(name, CMU, cmu_coords, device, reader, batch, args.workers, best_share)
                add(f"(c) {name} end to end, {reader} reader", "CMU-1-SR", real, f"{len(cmu_coords)} patches")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU smoke run)"
    header = (
        f"GPU: {gpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}; synthetic slide {args.slide_size}² px, {len(coords)} patches"
    )
    table = [header, "", "| measurement | slide | rate | note |", "|---|---|---|---|"]
    table += [f"| {what} | {slide} | {value:,.0f} | {note} |" for what, slide, value, note in rows]
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
