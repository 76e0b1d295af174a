"""Which decoders read a slide's JPEG tiles: GPU lanes (nvJPEG), CPU lanes (libjpeg), or both.

On CUDA the GPU's JPEG decoding and the CPU's cores together decode faster than either alone (H200: about
30k tiles/s from nvJPEG, 30k from 12 libjpeg threads, 52k together; benchmarks/RESULTS.md). Both join
only where they agree bit for bit on sample tiles of this slide, so which lane read a patch never changes
its features; where nvJPEG decodes the slide unlike libjpeg altogether (it ignores the Adobe RGB marker
of Aperio's RGB-coded tiles), only CPU lanes read it. On CUDA, CPU lanes decode in decode processes
(memamba.features.decode_processes), which leave the encoder's process its GIL.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from memamba.features.decode_processes import ProcessLibjpegDecoder, processes_supported, start_decode_processes
from memamba.features.jpeg_decoders import UPSAMPLING, LibjpegDecoder, NvjpegDecoder, SharedPool, TileDecoder
from memamba.features.jpeg_tiles import JpegTiffPyramid
from memamba.features.nvjpeg_batched import BatchedNvjpegDecoder, NvjpegUnavailable
from memamba.features.tile_reader import TilePatchReader

logger = logging.getLogger(__name__)

GPU_LANES = 1
"""nvJPEG lanes beside CPU lanes for an encoder run layer by layer: a second one makes the reader alone
faster but costs the encoder's process a thread contending for the GIL, which that encoder's loop takes
back once per layer; end to end it lost (H200, round robin, resnet50_trunc: 1 lane and 3 CPU lanes 7.3k
against 2 and 3: 6.9k; benchmarks/RESULTS.md, seventh pass)."""
GPU_LANES_GRAPHED = 2
"""nvJPEG lanes beside CPU lanes for a `graphed_encoder`, one replaying a CUDA graph a batch
(torch.compile on CUDA, or memamba.features.captured_encoder), whose loop takes the GIL back a few times
a batch: there the second lane gains (H200, round robin ×6: 8.2k against 7.8k patches/s, ahead in every
round; benchmarks/RESULTS.md, seventh pass)."""
GPU_BATCHES_A_READ_GRAPHED = 2
"""Encoder batches an nvJPEG lane reads at once (one nvJPEG call for all their tiles) beside CPU lanes and
a `graphed_encoder`. Beside a compiled encoder's CUDA graphs nvJPEG's call took about 15 ms more than
alone, whatever its size (512 tiles 38 ms, 1,024 tiles 57-61 ms), so larger calls paid it less often. That
was with CUDA's 8 hardware queues, before memamba.features.hardware_queues; with 32, one batch a call was
not ahead on jobs (0.90-1.02x; benchmarks/RESULTS.md, fifteenth pass).
Round robins x3 on two H200s: jobs of 6 slides 1.03 / 1.05 / 1.06x and 1.03 / 0.96 / 1.03x, one slide
within the noise (0.93-1.07x); with an encoder run layer by layer 0.97-0.99x, so its lanes read one batch
at once (benchmarks/RESULTS.md, thirteenth pass)."""
GPU_LANES_ALONE = 2
"""nvJPEG lanes where no CPU lanes decode beside them: the second one overlaps file reads, assembly and
resizing with the first one's decoding."""
CPU_LANES = 3
"""libjpeg lanes: on the CPU they share one pool of decode threads (one lane assembles while the others
decode); on CUDA each has its share of the decode processes, which idle while their lane copies and
assembles a batch on the GPU, so more lanes keep more processes busy (H200, round robin: 3 lanes 8.8k
patches/s against 2: 8.5k; 4 lanes were slower)."""
DECODE_PROCESSES = True
"""On CUDA, decode libjpeg lanes' tiles in processes (each with its own GIL), not in threads of the
encoder's process, where supported (Linux)."""
BATCHED_NVJPEG = True
"""GPU lanes call nvJPEG's batched decode directly (memamba.features.nvjpeg_batched), one call and one
tensor per batch, where this process's libnvjpeg has the hardware backend; torchvision's decode_jpeg
otherwise."""
SMALL_SLIDE_PATCHES = 1200
"""Slides of at most this many patches are read by nvJPEG lanes alone, even where libjpeg could join: a
libjpeg lane's batch takes about 2.5 times an nvJPEG lane's, and on a slide of few batches the last ones,
handed over in order, wait for it. H200, resnet50_trunc, 128-patch batches, nvJPEG lanes alone against
the hybrid plan: 225 / 529 / 961 patches 1.2–1.5× faster, 1,521 even, 2,116 and 3,844 slower
(benchmarks/RESULTS.md, tenth pass)."""
THREADS_KEPT = 2
"""Threads of a CUDA job's budget not given to libjpeg: the encoder's loop and the GPU lane."""
SAMPLE_PATCHES = 8
"""Patches, spread over the grid, whose tiles are decoded both ways to compare the decoders."""
FANCY_TOLERANCE = 8
"""Largest pixel difference between nvJPEG and libjpeg's default upsampling still taken as agreement."""


def start_lanes_early(device: torch.device, threads: int) -> None:
    """Start the decode processes of a CUDA job's CPU lanes now (a job of `threads` CPU threads), so
    that their start-up overlaps other work such as building the encoder."""
    if device.type == "cuda" and DECODE_PROCESSES and processes_supported():
        start_decode_processes(max(0, threads - THREADS_KEPT))


def plan_lanes(
    slide_path: Path,
    coords: np.ndarray,
    patch_size_level0: int,
    read_size: int,
    output_size: int,
    device: torch.device,
    threads: int,
    graphed_encoder: bool = False,
) -> list[TilePatchReader]:
    """Readers ("lanes") of one slide for `tile_batches`, using up to `threads` CPU threads in all.

    CPU: CPU_LANES libjpeg lanes sharing `threads` decode threads, with libjpeg's default upsampling
    (as OpenSlide). CUDA: GPU_LANES nvJPEG lanes (GPU_LANES_GRAPHED for a `graphed_encoder`, each
    reading GPU_BATCHES_A_READ_GRAPHED batches at once) and CPU lanes on `threads` − THREADS_KEPT decode
    processes with libjpeg's replicating upsampling where that decodes sample tiles exactly as nvJPEG;
    GPU_LANES_ALONE nvJPEG lanes where it does not, where no threads are left for libjpeg, or on a slide of
    at most SMALL_SLIDE_PATCHES patches; CPU lanes alone (default upsampling) where nvJPEG decodes the
    samples unlike libjpeg.
    """
    geometry = (coords, patch_size_level0, read_size, output_size, device)
    pyramid = JpegTiffPyramid(slide_path)
    if device.type != "cuda":
        return _threaded_lanes(pyramid, geometry, max(1, threads), "fancy")
    probe = TilePatchReader(pyramid, *geometry, decoder=gpu_decoder(device))
    agreement = _agreement(probe, coords, patch_size_level0)
    if agreement == "different":
        logger.info("%s: nvJPEG decodes its tiles unlike libjpeg: decoding on the CPU only", slide_path.name)
        probe.close()
        return _cpu_lanes(pyramid, geometry, max(1, threads - 1), "fancy")
    cpu_threads = threads - THREADS_KEPT
    small = len(coords) <= SMALL_SLIDE_PATCHES
    beside = agreement == "exact" and cpu_threads > 0 and not small
    gpu_lanes = (GPU_LANES_GRAPHED if graphed_encoder else GPU_LANES) if beside else GPU_LANES_ALONE
    lanes = [probe] + [
        TilePatchReader(pyramid.reopened(), *geometry, decoder=gpu_decoder(device)) for _ in range(gpu_lanes - 1)
    ]
    if agreement == "close":
        logger.info("%s: nvJPEG lanes only (libjpeg decodes its tiles a little differently)", slide_path.name)
    elif small:
        logger.info("%s: nvJPEG lanes only for its %d patches (a small slide)", slide_path.name, len(coords))
    if not beside:
        return lanes
    if graphed_encoder:
        for lane in lanes:
            lane.batches_a_read = GPU_BATCHES_A_READ_GRAPHED
    logger.info("%s: %d nvJPEG lanes, libjpeg on %d CPU cores beside them", slide_path.name, len(lanes), cpu_threads)
    return lanes + _cpu_lanes(pyramid, geometry, cpu_threads, "replicate")


def gpu_decoder(device: torch.device) -> TileDecoder:
    """A GPU lane's decoder: nvJPEG's batched decode called directly (BATCHED_NVJPEG, where available),
    with torchvision's decoder for the tiles it does not take; torchvision's alone otherwise."""
    if BATCHED_NVJPEG:
        try:
            return BatchedNvjpegDecoder(device, fallback=NvjpegDecoder(device))
        except NvjpegUnavailable as error:
            logger.info("nvJPEG's batched decode unavailable (%s): decoding through torchvision", error)
    return NvjpegDecoder(device)


def _cpu_lanes(pyramid: JpegTiffPyramid, geometry: tuple, threads: int, upsampling: str) -> list[TilePatchReader]:
    """CPU_LANES libjpeg lanes beside a CUDA encoder, on `threads` decode processes (DECODE_PROCESSES,
    where supported) or threads in all, each reading through its own reopening of `pyramid`."""
    if not (DECODE_PROCESSES and processes_supported()):
        return _threaded_lanes(pyramid, geometry, threads, upsampling)
    shares = np.array_split(np.arange(threads), min(CPU_LANES, threads))
    return [
        TilePatchReader(
            pyramid.reopened(), *geometry, decoder=ProcessLibjpegDecoder(geometry[-1], len(share), upsampling)
        )
        for share in shares
    ]


def _threaded_lanes(pyramid: JpegTiffPyramid, geometry: tuple, threads: int, upsampling: str) -> list[TilePatchReader]:
    """CPU_LANES libjpeg lanes, each with its own file handle (a reopening of `pyramid`), sharing one pool
    of `threads` threads."""
    pool = SharedPool(threads)
    return [
        TilePatchReader(
            pyramid.reopened(), *geometry, decoder=LibjpegDecoder(geometry[-1], upsampling=upsampling, pool=pool)
        )
        for _ in range(CPU_LANES)
    ]


def _agreement(probe: TilePatchReader, coords: np.ndarray, patch_size_level0: int) -> str:
    """How nvJPEG (`probe`'s decoder) decodes the tiles of SAMPLE_PATCHES patches against libjpeg:
    "exact" (as libjpeg with replicating upsampling), "close" (within FANCY_TOLERANCE of libjpeg's
    default) or "different"."""
    layout = probe.pyramid.levels[probe.level]
    picks = np.unique(np.linspace(0, len(coords) - 1, SAMPLE_PATCHES).round().astype(np.int64))
    centres = (coords[picks] + patch_size_level0 // 2) / layout.downsample
    cols = np.clip(centres[:, 0] // layout.tile_width, 0, layout.tiles_across - 1)
    rows = np.clip(centres[:, 1] // layout.tile_height, 0, layout.tiles_down - 1)
    tile_ids = np.unique((rows * layout.tiles_across + cols).astype(np.int64))
    on_gpu, gpu_bad = probe.decoder.decode(probe.pyramid, probe.level, tile_ids)
    on_gpu = on_gpu.cpu()
    cpu = torch.device("cpu")
    decoded = {}
    for upsampling in UPSAMPLING:
        decoder = LibjpegDecoder(cpu, upsampling=upsampling)
        decoded[upsampling] = decoder.decode(probe.pyramid, probe.level, tile_ids)
        decoder.close()
    (replicated, rep_bad), (fancy, _) = decoded["replicate"], decoded["fancy"]
    good = ~(gpu_bad | rep_bad)
    if not good.any():
        return "exact" if gpu_bad.all() and rep_bad.all() else "different"
    keep = torch.from_numpy(good)
    if torch.equal(on_gpu[keep], replicated[keep]):
        return "exact"
    worst = int((on_gpu[keep].int() - fancy[keep].int()).abs().max())
    return "close" if worst <= FANCY_TOLERANCE else "different"
