"""Benchmark: feature extraction against its ceilings and a CLAM-style baseline, all in one run.

Measures, on one GPU machine and in one process (patches/s unless stated):
(a) model-only ceilings: random uint8 batches already on the GPU, normalised and encoded (bf16 autocast,
    channels_last for CNNs) as a features job runs the encoder (`job_encoder`: on CUDA a CNN as cuDNN's
    fused kernels replayed as one CUDA graph a batch) and, where that differs, as built; on CUDA also
    resnet50_trunc through torch.compile at its end-to-end batch (one graph), and with --compile the other
    encoders too;
(b) reader ceilings: OpenSlide `SlidePatchDataset` on all CPU cores (no model); raw-tile read + JPEG
    decode by libjpeg on the CPU (tiles/s, one thread, all cores as threads, all cores as decode
    processes), by nvJPEG on the GPU (tiles/s, 1-2 threads), and by both at once (nvJPEG from 1-2
    threads beside libjpeg on the cores the tiles reader gives it, in threads or decode processes); the
    decode ceiling in patches/s (the fastest of these / tiles per patch; end-to-end rows are also given
    against nvJPEG alone, the fastest of its rows); and memamba's tiles reader alone
    (bytes, decode, assembly, resize; no model; planned as for resnet50_trunc's jobs), with libjpeg lanes
    in decode processes or threads and without libjpeg lanes;
(c) end to end (`encode_patches` over memamba's `patch_batches` for each reader configuration, worker
    start-up included; decode processes stay up between passes, as within a job) for resnet50_trunc and
    vit_large_patch16_224 on a synthetic 40× Aperio SVS with 256-px JPEG tiles and on the real
    CMU-1-Small-Region slide; on CUDA also resnet50_trunc through torch.compile (with --compile, every
    encoder), whose tiles reader then runs GPU_LANES_GRAPHED nvJPEG lanes; resnet50_trunc also on a
    TCGA-like grid (TCGA_PATCH_LEVEL0-px patches over a disc of a TCGA-sized synthetic slide, 100,000² by
    default: tiles shared between patches, batches of varying tile counts), in the tiles reader's banded
    reading order and in the grid's row-major order; on CUDA resnet50_trunc as a features job of
    --job-slides links to the synthetic slide (`extract_slides`, each slide opened one ahead; eager and
    compiled), from the end of its first slide to the end of its last (median of 3 jobs); and the
    CLAM-style baseline: fp32, no autocast, one OpenSlide handle shared by 8 forked workers, CPU
    normalisation, batch 256.

Patches are 20× (512 level-0 px of the 40× slide) resized to 224. Usage (GPU machine):

    PYTHONPATH=. python3 benchmarks/features.py --slide-size 40000 [--compile] [--out results.md]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
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

from memamba.features import cuda_waits, encoding, extract, tile_lanes
from memamba.features.batches import lane_stream, openslide_batches, reading_order
from memamba.features.captured_encoder import cuda_encoder, replays_cuda_graphs
from memamba.features.dataset import SlidePatchDataset
from memamba.features.decode_processes import ProcessLibjpegDecoder
from memamba.features.encoding import encode_patches
from memamba.features.extract import patch_batches
from memamba.features.hardware_queues import widen_hardware_queues
from memamba.features.jpeg_decoders import LibjpegDecoder, NvjpegDecoder, TileDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid
from memamba.features.registry import build_encoder, get_encoder_spec
from memamba.features.tile_lanes import THREADS_KEPT
from memamba.slide.coords_h5 import write_coords

CMU = Path(__file__).resolve().parents[1] / "tests" / "data" / "slides" / "cmu-1-small-region.svs"
TILE = 256
PATCH_LEVEL0 = 512
READ_SIZE = 256
TCGA_PATCH_LEVEL0 = 507
"""Level-0 px of a 256-px patch at 0.5 µm/px on a 0.2525 µm/px (40×) scan, as most of TCGA's: not a
multiple of the tile size, so neighbouring patches share tiles and batches hold different numbers of them."""
ENCODERS = ("resnet50_trunc", "vit_large_patch16_224")
MODEL_BATCH = {"resnet50_trunc": 128, "vit_large_patch16_224": 256}
"""Encoder batches end to end. Larger resnet50_trunc batches are slower with the tiles reader: the GPU's
JPEG decoding waits behind the encoder's longer bursts of kernels (H200, round robin in one run: 8.8k
patches/s at 128 against 8.3k at 256; earlier 6.2-6.6k at 512; benchmarks/RESULTS.md)."""
NVJPEG_CALLS = {False: "torchvision decode_jpeg", True: "batched call"}
"""How a GPU decoder calls nvJPEG, by `batched`."""
CEILING_BATCH = {"resnet50_trunc": 512, "vit_large_patch16_224": 256}
"""Batches of the model-only ceilings (the model alone is a little faster with larger batches)."""
Config = tuple[str, int, int]
"""A reader configuration: (reader, OpenSlide worker processes, CPU threads of the tiles reader)."""


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
    if importlib.util.find_spec("imagecodecs") is None:
        # The tiles are JPEG streams already, written as they are; tifffile only insists that a JPEG
        # encoder exists (imagecodecs, absent on the GPU machine), so register one that must never run.
        tifffile.TIFF.COMPRESSORS._codecs.setdefault(7, _never_called)
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


def write_grid_coords(path: Path, coords: np.ndarray) -> None:
    """A coords h5 of 20× patches (`coords`: level-0 corners [N, 2] of PATCH_LEVEL0-px patches of the 40×
    synthetic slide) in the tiling stage's schema (256 px at 0.5 µm/px)."""
    attrs = {"patch_size_level0": PATCH_LEVEL0, "patch_size": PATCH_LEVEL0, "patch_level": 0}
    write_coords(path, coords, {**attrs, "target_patch_size": 256, "target_mpp": 0.5, "status": "ok"})


def _never_called(*args: object, **kwargs: object) -> bytes:
    raise AssertionError("pre-encoded tiles must not be re-encoded")


def disc_grid(size: int, step: int) -> np.ndarray:
    """Level-0 corners [N, 2] of the `step`-px grid of a `size`² slide whose patches lie inside the disc
    of diameter `size` (a round piece of tissue, so rows of patches differ in length)."""
    coords = patch_grid(size, size, step)
    centres = coords + step / 2 - size / 2
    return coords[np.hypot(centres[:, 0], centres[:, 1]) + step / 2 <= size / 2]


def mean_tiles_per_patch(coords: np.ndarray, patch_level0: int, batch_size: int) -> float:
    """Tiles a patch of `coords` (level 0, `patch_level0` px) costs on average when each batch of
    `batch_size` patches decodes each of its level-0 tiles once."""
    total = 0
    for start in range(0, len(coords), batch_size):
        first = coords[start : start + batch_size] // TILE
        last = (coords[start : start + batch_size] + patch_level0 - 1) // TILE
        tiles = {
            (row, col)
            for (x0, y0), (x1, y1) in zip(first.tolist(), last.tolist(), strict=True)
            for row in range(y0, y1 + 1)
            for col in range(x0, x1 + 1)
        }
        total += len(tiles)
    return total / len(coords)


def patch_grid(width: int, height: int, step: int) -> np.ndarray:
    """Level-0 top-left corners [N, 2] of a non-overlapping grid of `step`-px patches inside the slide."""
    xs, ys = np.arange(0, width - step + 1, step), np.arange(0, height - step + 1, step)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.int64)


def publish(text: str, out: Path | None) -> None:
    """Print the markdown `text`, and write it to `out` too when given."""
    print(text)
    if out:
        out.write_text(text + "\n")


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


@functools.cache
def job_encoder(name: str, device: torch.device, batch_size: int) -> torch.nn.Module:
    """The encoder `name` as an eager features job runs it on `device` for batches of `batch_size` (on CUDA
    `cuda_encoder`: a CNN as cuDNN's fused kernels, one CUDA graph a batch), made once per run."""
    return cuda_encoder(encoder(name), get_encoder_spec(name), device, batch_size)


def model_pass(
    name: str,
    device: torch.device,
    compiled: bool,
    n_batches: int = 20,
    batch_size: int | None = None,
    as_built: bool = False,
) -> Callable[[], int]:
    """One pass (returning its images) of the encoder alone on random uint8 batches already on the GPU
    (normalisation included), in batches of `batch_size` (default CEILING_BATCH): as a features job runs it
    (`job_encoder`), through torch.compile if `compiled`, or the model `as_built`."""
    batch_size = batch_size or (CEILING_BATCH[name] if device.type == "cuda" else 8)
    spec = get_encoder_spec(name)
    model = encoder(name) if compiled or as_built else job_encoder(name, device, batch_size)
    n_batches = n_batches if device.type == "cuda" else 2
    images = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8, device=device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(n_batches):
            yield images, torch.zeros(batch_size, dtype=torch.bool)

    def work() -> int:
        encode_patches(model, spec, batches(), batch_size * n_batches, device, compile_model=compiled)
        return batch_size * n_batches

    return work


def model_ceiling(
    name: str,
    device: torch.device,
    compiled: bool,
    n_batches: int = 20,
    batch_size: int | None = None,
    as_built: bool = False,
) -> float:
    """img/s of `model_pass` (after a warm-up pass, which compiles)."""
    work = model_pass(name, device, compiled, n_batches, batch_size, as_built)
    work()
    return rate(work, device)


def openslide_ceiling(slide: Path, coords: np.ndarray, workers: int) -> float:
    """patches/s of the OpenSlide reader on `workers` processes, no model (worker start-up included), in
    batches of the largest end-to-end batch (so its workers read pieces as large as there); the median of
    three passes (single passes spread by ±10 %)."""
    dataset = SlidePatchDataset(slide, coords, PATCH_LEVEL0, READ_SIZE, 224)
    cpu, batch = torch.device("cpu"), max(MODEL_BATCH.values())
    return rate(lambda: sum(len(images) for images, _ in openslide_batches(dataset, cpu, batch, workers)), cpu, 3)


def cpu_decode_ceiling(
    pyramid: JpegTiffPyramid,
    tile_ids: np.ndarray,
    threads: int,
    device: torch.device,
    processes: bool = False,
    batch: int = 1024,
) -> float:
    """tiles/s of libjpeg (simplejpeg, replicating upsampling as beside nvJPEG) on `threads` threads or
    decode processes, file reads and the copy to `device` included, in batches of `batch` tiles (as a
    CPU lane reads)."""
    decoder = libjpeg_decoder(device, threads, processes)

    def work() -> int:
        for start in range(0, len(tile_ids), batch):
            decoder.decode(pyramid, 0, tile_ids[start : start + batch])
        return len(tile_ids)

    work()
    value = rate(work, device)
    decoder.close()
    return value


def libjpeg_decoder(device: torch.device, threads: int, processes: bool) -> TileDecoder:
    """libjpeg with replicating upsampling on `threads` threads or decode processes."""
    if processes:
        return ProcessLibjpegDecoder(device, threads, "replicate")
    return LibjpegDecoder(device, threads, "replicate")


def gpu_decoder(device: torch.device, batched: bool) -> TileDecoder:
    """nvJPEG as the GPU lanes run it (batched: its batched decode called directly) or through
    torchvision's decode_jpeg (one tensor per tile)."""
    return tile_lanes.gpu_decoder(device) if batched else NvjpegDecoder(device)


def gpu_decode_ceiling(
    pyramid: JpegTiffPyramid, tile_ids: np.ndarray, device: torch.device, threads: int, batched: bool
) -> float:
    """tiles/s of nvJPEG in batches of 1024 tiles from `threads` threads at once (one decoder each),
    file reads included (one tensor per batch on the device, as the reader uses it)."""
    decoders, batch = [gpu_decoder(device, batched) for _ in range(threads)], 1024

    def decode(offset: int) -> int:
        for start in range(offset * batch, len(tile_ids), batch * threads):
            decoders[offset].decode(pyramid, 0, tile_ids[start : start + batch])
        return 0

    with ThreadPoolExecutor(threads) as pool:

        def work() -> int:
            list(pool.map(decode, range(threads)))
            return len(tile_ids)

        work()
        tiles_per_s = rate(work, device)
    for decoder in decoders:
        decoder.close()
    return tiles_per_s


def combined_decode_ceiling(
    pyramid: JpegTiffPyramid,
    tile_ids: np.ndarray,
    device: torch.device,
    cpu_threads: int,
    processes: bool,
    gpu_threads: int,
    batched: bool,
    seconds: float = 4.0,
) -> tuple[float, float]:
    """(nvJPEG tiles/s, libjpeg tiles/s) with both decoding at once for `seconds`, as the tiles reader
    runs them: nvJPEG (batched or through torchvision, see gpu_decoder) from `gpu_threads` threads,
    libjpeg (replicating upsampling) in CPU_LANES lanes on `cpu_threads` decode processes (or one lane on
    as many threads), each lane on its own CUDA stream and waiting for it as the lanes do; batches of
    1024 tiles, file reads and copies to the GPU included."""
    decoders: list[TileDecoder] = [gpu_decoder(device, batched) for _ in range(gpu_threads)]
    if processes:
        shares = np.array_split(np.arange(cpu_threads), tile_lanes.CPU_LANES)
        decoders += [libjpeg_decoder(device, len(share), processes=True) for share in shares]
    else:
        decoders.append(libjpeg_decoder(device, cpu_threads, processes=False))
    counts = [0] * len(decoders)
    stop = time.perf_counter() + seconds

    def loop(lane: int) -> None:
        start, stream = lane * 1024, lane_stream(device)
        with torch.cuda.stream(stream):
            while time.perf_counter() < stop:
                tiles, _ = decoders[lane].decode(pyramid, 0, tile_ids[start % len(tile_ids) :][:1024])
                cuda_waits.wait_for_stream(stream)
                counts[lane] += len(tiles)
                start += 1024

    begin = time.perf_counter()
    with ThreadPoolExecutor(len(decoders)) as pool:
        list(pool.map(loop, range(len(decoders))))
    elapsed = time.perf_counter() - begin
    for decoder in decoders:
        decoder.close()
    return sum(counts[:gpu_threads]) / elapsed, sum(counts[gpu_threads:]) / elapsed


def reader_batches(
    slide: Path,
    coords: np.ndarray,
    device: torch.device,
    config: Config,
    batch_size: int,
    size: int,
    graphed: bool = False,
    patch_level0: int = PATCH_LEVEL0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """memamba's own batches of `patch_level0`-px patches for a reader configuration (reader, worker
    processes, CPU threads), planned for an encoder replaying CUDA graphs (`graphed`) or not."""
    reader, workers, threads = config
    dataset = SlidePatchDataset(slide, coords, patch_level0, READ_SIZE, size)
    return patch_batches(reader, dataset, device, batch_size, workers, threads, graphed_encoder=graphed)[1]


def reader_pass(
    slide: Path, coords: np.ndarray, device: torch.device, config: Config, batch_size: int, graphed: bool = True
) -> Callable[[], int]:
    """One pass (returning its patches) of a reader configuration alone, no model (worker start-up
    included), planned for an encoder replaying CUDA graphs (`graphed`, as resnet50_trunc's) or not."""

    def work() -> int:
        batches = reader_batches(slide, coords, device, config, batch_size, 224, graphed)
        return sum(len(images) for images, _ in batches)

    return work


def reader_ceiling(slide: Path, coords: np.ndarray, device: torch.device, config: Config, batch_size: int) -> float:
    """patches/s of `reader_pass` (after a warm-up pass)."""
    work = reader_pass(slide, coords, device, config, batch_size)
    work()
    return rate(work, device, repeats=passes(config))


def end_to_end_pass(
    name: str,
    slide: Path,
    coords: np.ndarray,
    device: torch.device,
    config: Config,
    batch_size: int,
    compiled: bool = False,
    patch_level0: int = PATCH_LEVEL0,
) -> Callable[[], int]:
    """One pass (returning its patches) of reading + encoding every patch (`patch_level0` px at level 0;
    features on the host) with memamba's fast settings, the encoder as an eager job runs it (`job_encoder`)
    or `compiled` (torch.compile); worker start-up included."""
    spec = get_encoder_spec(name)
    model = encoder(name) if compiled else job_encoder(name, device, batch_size)
    graphed = replays_cuda_graphs(model, compiled, device)

    def work() -> int:
        batches = reader_batches(slide, coords, device, config, batch_size, spec.input_size, graphed, patch_level0)
        features, _ = encode_patches(model, spec, batches, len(coords), device, compile_model=compiled)
        return len(features)

    return work


def end_to_end(
    name: str,
    slide: Path,
    coords: np.ndarray,
    device: torch.device,
    config: Config,
    batch_size: int,
    compiled: bool = False,
    patch_level0: int = PATCH_LEVEL0,
) -> float:
    """patches/s of `end_to_end_pass`, after one warm-up pass (so the page cache is warm and the graph
    compiled)."""
    work = end_to_end_pass(name, slide, coords, device, config, batch_size, compiled, patch_level0)
    work()
    return rate(work, device, repeats=passes(config))


def job_of_slides(
    name: str,
    slide: Path,
    coords: np.ndarray,
    n_slides: int,
    device: torch.device,
    batch_size: int,
    compiled: bool,
    repeats: int = 3,
) -> float:
    """patches/s of an `extract_slides` job over `n_slides` links to `slide` (the features rule's job of
    several slides: slides opened one ahead), from the end of its first slide to the end of its last (the
    encoder's build and compilation and the first slide's start are left out): the median of `repeats`
    jobs in a row (one job's rate spread by up to ±10 % between runs)."""
    folder = Path(tempfile.mkdtemp(dir=slide.parent))
    coords_h5 = folder / "coords.h5"
    write_grid_coords(coords_h5, coords)
    jobs = []
    for index in range(n_slides):
        linked = folder / f"slide{index}.svs"
        os.link(slide, linked)
        jobs.append(extract.SlideJob(linked, coords_h5, folder / f"slide{index}.features.h5"))
    rates = []
    for _ in range(repeats):
        results = extract.extract_slides(
            jobs,
            encoder=name,
            allow_random_weights=True,
            device=str(device),
            batch_size=batch_size,
            compile_model=compiled,
        )
        later = results[1:]
        rates.append(sum(result.n_patches for result in later) / sum(result.seconds for result in later))
    return statistics.median(rates)


def tcga_like_rows(
    name: str,
    slide: Path,
    size: int,
    device: torch.device,
    config: Config,
    batch: int,
    decode_tiles: float,
    add: Callable,
) -> None:
    """`name` end to end on a TCGA-like grid (TCGA_PATCH_LEVEL0-px patches over a disc of a `size`² slide),
    with the tiles reader's banded reading order and, for comparison, in the grid's row-major order."""
    coords = disc_grid(size, TCGA_PATCH_LEVEL0)
    banded = coords[reading_order(coords, TCGA_PATCH_LEVEL0)]
    rates = {}
    for label, ordered in (("banded reading order", True), ("row-major order", False)):
        with lanes_settings(ordered=ordered):
            rates[label] = end_to_end(name, slide, coords, device, config, batch, patch_level0=TCGA_PATCH_LEVEL0)
        tiles = mean_tiles_per_patch(banded if ordered else coords, TCGA_PATCH_LEVEL0, batch)
        note = f"{len(coords)} patches, {tiles:.2f} tiles a patch: {rates[label] * tiles / decode_tiles:.0%} of the "
        note += "decode ceiling in tiles/s"
        if not ordered:
            note += f"; banded order {rates['banded reading order'] / rates[label]:.2f}x"
        how = f"{describe(config, device)}, TCGA-like grid ({TCGA_PATCH_LEVEL0}-px patches over a disc), {label}"
        add(f"(c) {name} end to end, {how}", f"{size}²", rates[label], note)


def passes(config: Config) -> int:
    """Timed passes of a reader configuration: five of the tiles reader (a pass takes about a second and
    single passes spread by ±5 %), two of the OpenSlide reader (several seconds each)."""
    return 2 if config[0] == "openslide" else 5


@contextlib.contextmanager
def lanes_settings(
    processes: bool | None = None,
    switch: float | None = None,
    blocking: bool | None = None,
    batched: bool | None = None,
    ordered: bool = True,
) -> Iterator[None]:
    """memamba's tiles-reader settings changed for a measurement (libjpeg lanes in decode processes or
    threads, GIL switch interval in s while an encoder replaying CUDA graphs runs, sleeping or busy-polling
    CUDA waits, nvJPEG's batched call or torchvision's, the banded reading order or the coords' own),
    restored afterwards."""
    saved = (
        tile_lanes.DECODE_PROCESSES,
        encoding.GIL_SWITCH_INTERVAL_GRAPHED,
        cuda_waits.BLOCKING,
        tile_lanes.BATCHED_NVJPEG,
    )
    tile_lanes.DECODE_PROCESSES = saved[0] if processes is None else processes
    encoding.GIL_SWITCH_INTERVAL_GRAPHED = saved[1] if switch is None else switch
    cuda_waits.BLOCKING = saved[2] if blocking is None else blocking
    tile_lanes.BATCHED_NVJPEG = saved[3] if batched is None else batched
    order = extract.reading_order
    if not ordered:
        extract.reading_order = lambda coords, patch_size_level0: np.arange(len(coords))
    try:
        yield
    finally:
        tile_lanes.DECODE_PROCESSES, encoding.GIL_SWITCH_INTERVAL_GRAPHED = saved[:2]
        cuda_waits.BLOCKING, tile_lanes.BATCHED_NVJPEG = saved[2:]
        extract.reading_order = order


def lanes_sweep(slide: Path, coords: np.ndarray, device: torch.device, cores: int, add: Callable) -> None:
    """resnet50_trunc end to end with one setting other than the defaults: nvJPEG through torchvision
    instead of its batched call; libjpeg lanes in threads of the encoder's process instead of decode
    processes; two more decode processes than the job's threads allow; a GIL switch interval of 0.5 ms
    (an encoder run layer by layer's) for its encoder replaying CUDA graphs; CUDA's busy-polling waits;
    batches of 256 and 512."""
    batch = MODEL_BATCH["resnet50_trunc"]
    variants = (
        ("nvJPEG through torchvision's decode_jpeg", {"batched": False}, cores, batch),
        ("libjpeg lanes in threads, not processes", {"processes": False}, cores, batch),
        ("2 decode processes more", {}, cores + 2, batch),
        ("GIL switch interval 0.5 ms", {"switch": 5e-4}, cores, batch),
        ("busy-polling CUDA waits", {"blocking": False}, cores, batch),
        ("batches of 256", {}, cores, 256),
        ("batches of 512", {}, cores, 512),
    )
    for label, settings, threads, size in variants:
        with lanes_settings(**settings):
            config = ("tiles", 0, threads)
            value = end_to_end("resnet50_trunc", slide, coords, device, config, size)
        add(f"(c) resnet50_trunc end to end, {describe(config, device)}; {label}", "synthetic", value)


def describe(config: Config, device: torch.device) -> str:
    """Words for a reader configuration on `device`."""
    reader, workers, threads = config
    if reader == "openslide":
        return f"OpenSlide reader, {workers} processes"
    if device.type != "cuda":
        return f"tiles reader, libjpeg on {threads} threads"
    beside = threads - THREADS_KEPT
    if beside <= 0:
        return "tiles reader, nvJPEG only"
    decoders = "decode processes" if tile_lanes.DECODE_PROCESSES else "threads"
    return f"tiles reader, nvJPEG + libjpeg on {beside} {decoders}"


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
    parser.add_argument(
        "--tcga-slide-size", type=int, default=100_000, help="side of the TCGA-sized slide of the TCGA-like grid (px)"
    )
    parser.add_argument("--baseline-patches", type=int, default=2048, help="patches for the CLAM-style baseline")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd model ceilings")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="OpenSlide reader processes")
    parser.add_argument("--job-slides", type=int, default=6, help="slides of the job-of-slides rows (CUDA)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a smoke run)")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        widen_hardware_queues()  # as a features job does, before CUDA starts
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
        tcga_size = args.tcga_slide_size
        tcga_slide = Path(folder) / "tcga_sized_40x.svs"
        write_synthetic_svs(tcga_slide, tcga_size)
        coords = patch_grid(args.slide_size, args.slide_size, PATCH_LEVEL0)
        cmu_coords = patch_grid(2220, 2967, 256)
        pyramid = JpegTiffPyramid(synthetic)
        tile_ids = np.arange(min(8192, len(pyramid.levels[0].offsets)))
        tiles_per_patch = (PATCH_LEVEL0 // TILE) ** 2
        cores = os.cpu_count() or 1

        ceilings, compiled_ceilings = {}, {}
        for name in args.encoders:
            ceilings[name] = model_ceiling(name, device, compiled=False)
            add(f"(a) model only {name}, bf16, as a features job runs it", "-", ceilings[name], "img/s")
            if device.type == "cuda" and job_encoder(name, device, CEILING_BATCH[name]) is not encoder(name):
                as_built = model_ceiling(name, device, compiled=False, as_built=True)
                add(f"(a) model only {name}, bf16, as built (no rewrite)", "-", as_built, "img/s")
            if device.type == "cuda" and (args.compile or name == "resnet50_trunc"):
                batch = MODEL_BATCH[name]
                compiled_ceilings[name] = model_ceiling(name, device, True, batch_size=batch)
                add(f"(a) model only {name}, bf16, torch.compile, batch {batch}", "-", compiled_ceilings[name], "img/s")
        openslide_rate = openslide_ceiling(synthetic, coords, args.workers)
        add(f"(b) OpenSlide reader, {args.workers} processes", "synthetic", openslide_rate, "patches/s")
        cpu_decodes = []
        for threads, processes in ((1, False), (cores, False), (cores, True)):
            cpu_decodes.append(cpu_decode_ceiling(pyramid, tile_ids, threads, device, processes))
            how = f"{threads} decode processes" if processes else f"{threads} thread(s)"
            add(f"(b) libjpeg read + decode of raw tiles, {how}", "synthetic", cpu_decodes[-1], "tiles/s")
        decode_tiles, nvjpeg_tiles = max(cpu_decodes), 0.0
        if device.type == "cuda":
            for batched in (False, True):
                for threads in (1, 2):
                    tiles = gpu_decode_ceiling(pyramid, tile_ids, device, threads, batched)
                    nvjpeg_tiles = max(nvjpeg_tiles, tiles)
                    how = f"{NVJPEG_CALLS[batched]}, {threads} thread(s)"
                    add(f"(b) nvJPEG read + decode of raw tiles, {how}", "synthetic", tiles, "tiles/s")
            beside = cores - THREADS_KEPT
            combinations = [(False, tile_lanes.GPU_LANES, True)]
            combinations += [(True, gpu_threads, batched) for batched in (False, True) for gpu_threads in (1, 2)]
            for processes, gpu_threads, batched in combinations:
                on_gpu, on_cpu = combined_decode_ceiling(
                    pyramid, tile_ids, device, beside, processes, gpu_threads, batched
                )
                decode_tiles = max(decode_tiles, on_gpu + on_cpu)
                note = f"nvJPEG {on_gpu:,.0f} + libjpeg {on_cpu:,.0f} tiles/s"
                how = f"{gpu_threads} nvJPEG thread(s) ({NVJPEG_CALLS[batched]}) and libjpeg on {beside} "
                how += "decode processes" if processes else "threads"
                add(f"(b) {how} at once", "synthetic", on_gpu + on_cpu, note)
        decode_rate, nvjpeg_rate = decode_tiles / tiles_per_patch, nvjpeg_tiles / tiles_per_patch
        add("(b) decode ceiling: the fastest raw decode above / tiles per patch", "synthetic", decode_rate, "patches/s")

        def against_ceilings(rate: float, model: float) -> str:
            """`rate` against min(model, decode ceiling), and on CUDA against min(model, nvJPEG alone)."""
            note = f"{rate / min(model, decode_rate):.0%} of min(model, decode)"
            if nvjpeg_rate:
                note += f"; {rate / min(model, nvjpeg_rate):.0%} of min(model, nvJPEG alone)"
            return note

        configs = [("tiles", 0, cores)] + ([("tiles", 0, THREADS_KEPT)] if device.type == "cuda" else [])
        for config in configs:
            alone = reader_ceiling(synthetic, coords, device, config, 256)
            note = f"{alone / decode_rate:.0%} of the decode ceiling"
            add(f"(b) {describe(config, device)}, no model", "synthetic", alone, note)
        if device.type == "cuda":
            with lanes_settings(processes=False):
                alone = reader_ceiling(synthetic, coords, device, configs[0], 256)
            note = f"{alone / decode_rate:.0%} of the decode ceiling"
            add(f"(b) {describe(configs[0], device)} (libjpeg in threads), no model", "synthetic", alone, note)

        if device.type == "cuda" and "resnet50_trunc" in args.encoders:
            lanes_sweep(synthetic, coords, device, cores, add)

        for name in args.encoders:
            batch = MODEL_BATCH[name] if device.type == "cuda" else 16
            fast = {}
            for config in configs:
                fast[config] = end_to_end(name, synthetic, coords, device, config, batch)
                note = f"{against_ceilings(fast[config], ceilings[name])}; {fast[config] / ceilings[name]:.0%} of model"
                add(f"(c) {name} end to end, {describe(config, device)}", "synthetic", fast[config], note)
            if name in compiled_ceilings:
                compiled_rate = end_to_end(name, synthetic, coords, device, configs[0], batch, compiled=True)
                note = against_ceilings(compiled_rate, compiled_ceilings[name]).replace("model", "compiled model")
                how = f"torch.compile, {describe(configs[0], device)}, {tile_lanes.GPU_LANES_GRAPHED} nvJPEG lanes"
                add(f"(c) {name} end to end, {how}", "synthetic", compiled_rate, note)
            if device.type == "cuda" and name == "resnet50_trunc":
                for compiled in (False, True):
                    job_rate = job_of_slides(name, synthetic, coords, args.job_slides, device, batch, compiled)
                    model = compiled_ceilings[name] if compiled else ceilings[name]
                    how = "torch.compile" if compiled else "eager"
                    note = against_ceilings(job_rate, model) + (" (compiled model)" if compiled else "")
                    what = f"(c) {name}, a job of {args.job_slides} slides read one ahead, {how}, after its first slide"
                    what += " (median of 3 jobs)"
                    add(what, "synthetic", job_rate, note)
            if name == "resnet50_trunc":
                tcga_like_rows(name, tcga_slide, tcga_size, device, configs[0], batch, decode_tiles, add)
            best = max(fast, key=fast.get)
            slow_config = ("openslide", args.workers, 1)
            slow = end_to_end(name, synthetic, coords, device, slow_config, batch)
            add(
                f"(c) {name} end to end, {describe(slow_config, device)}",
                "synthetic",
                slow,
                f"{slow / min(ceilings[name], openslide_rate):.0%} of min(model, OpenSlide)",
            )
            baseline = clam_baseline(name, synthetic, coords[: args.baseline_patches], device)
            add(
                f"(c) {name} CLAM-style baseline",
                "synthetic",
                baseline,
                f"best tiles reader {fast[best] / baseline:.1f}x",
            )
            for config in (best, slow_config):
                real = end_to_end(name, CMU, cmu_coords, device, config, batch)
                what = f"(c) {name} end to end, {describe(config, device)}"
                add(what, "CMU-1-SR", real, f"{len(cmu_coords)} patches")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU smoke run)"
    header = (
        f"GPU: {gpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}; synthetic slide {args.slide_size}² px, {len(coords)} patches"
    )
    table = [header, "", "| measurement | slide | rate | note |", "|---|---|---|---|"]
    table += [f"| {what} | {slide} | {value:,.0f} | {note} |" for what, slide, value, note in rows]
    publish("\n".join(table), args.out)


if __name__ == "__main__":
    main()
