"""Feature extraction: encode every patch of one slide's coords file into a features h5 file."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from memamba.errors import InputError
from memamba.features.batches import Batch, LaneBatches, openslide_batches, reading_order, tile_batches
from memamba.features.dataset import SlidePatchDataset
from memamba.features.encoding import encode_patches
from memamba.features.features_h5 import write_features
from memamba.features.hardware_queues import widen_hardware_queues
from memamba.features.registry import (
    PRETRAINED,
    RANDOM_WEIGHTS,
    EncoderSpec,
    build_encoder,
    check_weights_choice,
    get_encoder_spec,
)
from memamba.features.slides_ahead import opened_ahead
from memamba.features.weights import file_sha256
from memamba.naming import slide_key

logger = logging.getLogger(__name__)

COORDS_ATTRS = ("patch_size_level0", "patch_size", "target_mpp", "status")
READERS = ("auto", "openslide", "tiles")


@dataclass
class FeatureResult:
    """Outcome of one slide: `status` copied from the coords file, `seconds` wall time, `reader` the
    patch reader used ("openslide", "tiles" or "none" for an empty grid)."""

    slide: str
    status: str
    n_patches: int
    feature_dim: int
    seconds: float
    blank_patches: int
    reader: str = "none"


@dataclass(frozen=True)
class PatchGrid:
    """A coords file: level-0 top-left `coords` [N, 2] of patches of `patch_size_level0` level-0 px,
    which are `patch_size` px at `target_mpp` µm/px; `status` is "ok" or why the grid is empty."""

    coords: np.ndarray
    patch_size_level0: int
    patch_size: int
    target_mpp: float
    status: str


def read_patch_grid(path: Path) -> PatchGrid:
    """Read a coords h5 (dataset `coords` int64 [N, 2] and its attributes) written by `memamba tile`.

    The patch side at `target_mpp` is `target_patch_size` where present (`memamba tile` keeps
    `patch_size` for CLAM's meaning, px at `patch_level`), else `patch_size` (TRIDENT's meaning).
    """
    from memamba.slide.coords_h5 import read_coords

    coords, attrs = read_coords(path)
    missing = [name for name in COORDS_ATTRS if name not in attrs]
    if missing:
        raise InputError(f"{path}: coords lack attributes {', '.join(missing)}: re-run `memamba tile`")
    return PatchGrid(
        coords=coords,
        patch_size_level0=int(attrs["patch_size_level0"]),
        patch_size=int(attrs.get("target_patch_size", attrs["patch_size"])),
        target_mpp=float(attrs["target_mpp"]),
        status=str(attrs["status"]),
    )


@dataclass(frozen=True)
class SlideJob:
    """One slide of a features job: the slide file, its coords h5 and the features h5 to write."""

    slide: Path
    coords: Path
    output: Path


def extract_features(
    slide_path: Path,
    coords_h5: Path,
    out_h5: Path,
    *,
    encoder: str = "resnet50_trunc",
    weights: Path | str | None = None,
    allow_random_weights: bool = False,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    reader: str = "auto",
    compile_model: bool = False,
    threads: int | None = None,
) -> FeatureResult:
    """Encode the patches listed in `coords_h5` of `slide_path`; write features [N, D] to `out_h5`.

    A coords status other than "ok", or no patches, gives an empty [0, D] features file carrying that
    status. Patches that cannot be read even on a fresh handle and at another level are encoded as
    black images and counted in `blank_patches`. CPU runs float32; CUDA runs under autocast in the
    encoder's precision. `reader`: "tiles" decodes the slide's JPEG tiles (nvJPEG on CUDA, with libjpeg
    on CPU threads beside it; see memamba.features.tile_lanes), "openslide" reads through OpenSlide in
    `num_workers` processes, "auto" takes "tiles" on CUDA when the slide is a tiled-JPEG TIFF/SVS.
    `threads`: CPU threads the tiles reader may use (default: the cores this process may run on).
    `weights`: a file, "pretrained" (online) or None. Bad input raises InputError, writing nothing.
    """
    return extract_slides(
        [SlideJob(Path(slide_path), Path(coords_h5), Path(out_h5))],
        encoder=encoder,
        weights=weights,
        allow_random_weights=allow_random_weights,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        reader=reader,
        compile_model=compile_model,
        threads=threads,
        record_failures=False,
    )[0]


def extract_slides(
    jobs: list[SlideJob],
    *,
    encoder: str = "resnet50_trunc",
    weights: Path | str | None = None,
    allow_random_weights: bool = False,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    reader: str = "auto",
    compile_model: bool = False,
    threads: int | None = None,
    record_failures: bool = True,
) -> list[FeatureResult]:
    """`extract_features` for each slide of `jobs` in turn, in one process: the encoder is built (and
    compiled) once, and the decode processes and nvJPEG's handle serve every slide. A job's fixed costs
    (imports, building the encoder, starting the decoders) are then paid once for all its slides; on the
    GPU machine they took 13–16 s a job, against 0.7–1.3 s to encode a 6,084-patch slide. Each slide is
    opened one ahead (memamba.features.slides_ahead): the tiles reader's lanes start on the next slide
    while the encoder finishes this one.

    With `record_failures`, a slide whose input is bad (coords or slide file) gets an empty features file
    whose status is "failed: " and the one-line error, which the cohort skips, and the next slide goes
    on; otherwise the InputError is raised. Settings that are bad for every slide raise at once.
    A CUDA job asks CUDA for more hardware queues first (memamba.features.hardware_queues).
    """
    weights = None if weights is None else weights if weights == PRETRAINED else Path(weights)
    spec = get_encoder_spec(encoder)
    check_weights_choice(spec, weights, allow_random_weights)
    if batch_size < 1 or num_workers < 0:
        raise InputError(f"batch size {batch_size} / workers {num_workers}: use --batch-size ≥ 1, --num-workers ≥ 0")
    if threads is not None and threads < 1:
        raise InputError(f"threads {threads}: use --threads ≥ 1")
    if reader not in READERS:
        raise InputError(f"unknown reader {reader!r}: pass --reader {', '.join(READERS)}")
    if str(device).startswith("cuda"):
        widen_hardware_queues()  # before CUDA starts in this process, which _resolve_device may do
    torch_device = _resolve_device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        if reader != "openslide":
            from memamba.features.jpeg_decoders import cpu_threads_available
            from memamba.features.tile_lanes import start_lanes_early

            start_lanes_early(torch_device, threads or cpu_threads_available())
    job_encoder = _JobEncoder(spec, weights, allow_random_weights, torch_device, batch_size, compile_model)
    graphed = torch_device.type == "cuda" and (compile_model or job_encoder.replays_graphs())
    reading = {"batch_size": batch_size, "num_workers": num_workers, "threads": threads}

    def open_job(job: SlideJob) -> _OpenedSlide:
        return _open_slide(job, spec, torch_device, reader, graphed_encoder=graphed, **reading)

    on_device = (lambda: torch.cuda.device(torch_device)) if torch_device.type == "cuda" else contextlib.nullcontext
    results = []
    for job, opened in opened_ahead(jobs, open_job, on_device):
        start = time.perf_counter()
        try:
            if isinstance(opened, InputError):
                raise opened
            results.append(_encode_slide(opened, job_encoder, torch_device, start, compile_model=compile_model))
        except InputError as error:
            if not record_failures:
                raise
            logger.error("%s", error)
            status = f"failed: {error}"
            empty = np.zeros((0, spec.output_dim), np.float32), np.zeros((0, 2), np.int64)
            unknown = {"mpp": float("nan"), "patch_size": 0}  # the coords may be what failed
            attrs = {**unknown, "status": status, "blank_patches": 0, "reader": "none", "device": str(torch_device)}
            seconds = _write_slide_features(job.output, *empty, job_encoder, attrs, start)
            results.append(FeatureResult(slide_key(job.slide.name), status, 0, spec.output_dim, seconds, 0))
    return results


class _JobEncoder:
    """A job's encoder, built (and its weights hashed) once, at the first slide with patches to encode (on
    CUDA at the job's start, see `replays_graphs`). On CUDA without torch.compile it runs as `cuda_encoder`
    makes it for batches of `batch_size`."""

    def __init__(
        self,
        spec: EncoderSpec,
        weights: Path | str | None,
        allow_random_weights: bool,
        device: torch.device,
        batch_size: int,
        compile_model: bool,
    ) -> None:
        self.spec, self.weights, self.allow_random_weights = spec, weights, allow_random_weights
        self.device, self.batch_size, self.compile_model = device, batch_size, compile_model
        self._model: torch.nn.Module | None = None
        self._digest: str | None = None

    def model(self) -> torch.nn.Module:
        if self._model is None:
            from memamba.features.captured_encoder import cuda_encoder

            built, self._digest = build_encoder(self.spec, self.weights, self.allow_random_weights)
            compiled = self.compile_model  # torch.compile takes the model as built
            self._model = built if compiled else cuda_encoder(built, self.spec, self.device, self.batch_size)
        return self._model

    def replays_graphs(self) -> bool:
        """Whether the encoder is a CapturedEncoder (built now: on CUDA it is captured before any slide's
        reader decodes on the GPU, as capturing forbids device-wide synchronisation meanwhile)."""
        from memamba.features.captured_encoder import CapturedEncoder

        return isinstance(self.model(), CapturedEncoder)

    @property
    def digest(self) -> str:
        """sha256 of the weights ("random"; "pretrained" until the downloaded weights are loaded)."""
        if self._digest is None:
            weights = self.weights
            self._digest = (
                RANDOM_WEIGHTS if weights is None else PRETRAINED if weights == PRETRAINED else file_sha256(weights)
            )
        return self._digest


@dataclass
class _OpenedSlide:
    """A slide of a job opened for encoding (see memamba.features.slides_ahead): its patch grid and, where
    it has patches, its dataset and the reader's batches (`order`: dataset rows in the batches' order)."""

    job: SlideJob
    grid: PatchGrid
    dataset: SlidePatchDataset | None = None
    reader: str = "none"
    batches: Iterable[Batch] = ()
    order: np.ndarray | None = None
    reading_done: threading.Event = field(default_factory=threading.Event)

    @property
    def overlaps(self) -> bool:
        """The next slide may be read while this one is encoded, unless OpenSlide's workers fork for it."""
        return self.reader != "openslide"

    def start(self) -> None:
        if isinstance(self.batches, LaneBatches):
            self.batches.start()

    def close(self) -> None:
        if isinstance(self.batches, LaneBatches):
            self.batches.close()
        self.reading_done.set()


def _open_slide(
    job: SlideJob,
    spec: EncoderSpec,
    device: torch.device,
    reader: str,
    *,
    batch_size: int,
    num_workers: int,
    threads: int | None,
    graphed_encoder: bool,
) -> _OpenedSlide:
    """Read a job's coords and plan its slide's reader (see `extract_features`); bad input raises InputError."""
    grid = read_patch_grid(job.coords)
    if grid.status != "ok" or len(grid.coords) == 0:
        nothing_to_read = _OpenedSlide(job, grid)
        nothing_to_read.reading_done.set()
        return nothing_to_read
    _check_slide_opens(job.slide)
    dataset = SlidePatchDataset(job.slide, grid.coords, grid.patch_size_level0, grid.patch_size, spec.input_size)
    used_reader, batches, order = patch_batches(
        reader, dataset, device, batch_size, num_workers, threads, graphed_encoder=graphed_encoder
    )
    opened = _OpenedSlide(job, grid, dataset, used_reader, batches, order)
    if isinstance(batches, LaneBatches):
        opened.reading_done = batches.reading_done
    return opened


def _encode_slide(
    opened: _OpenedSlide, job_encoder: _JobEncoder, device: torch.device, start: float, *, compile_model: bool
) -> FeatureResult:
    """Encode an opened slide of a job and write its features file; its `seconds` count from `start`, when
    the job turned to it (the slide was opened and began reading while the slide before it encoded)."""
    spec, grid = job_encoder.spec, opened.grid
    name = slide_key(opened.job.slide.name)
    if opened.dataset is None:
        logger.warning("%s: coords status %r, %d patches: writing empty features", name, grid.status, len(grid.coords))
        features, coords, blank = np.zeros((0, spec.output_dim), np.float32), grid.coords[:0], 0
    else:
        model = job_encoder.model()
        features, blank = encode_patches(
            model, spec, opened.batches, len(opened.dataset), device, compile_model=compile_model, label=name
        )
        features, coords = features[np.argsort(opened.order)], grid.coords  # back to the coords' order
    attrs = {
        "mpp": grid.target_mpp,
        "patch_size": grid.patch_size,
        "patch_size_level0": grid.patch_size_level0,
        "status": grid.status,
        "blank_patches": blank,
        "reader": opened.reader,
        "device": str(device),
    }
    seconds = _write_slide_features(opened.job.output, features, coords, job_encoder, attrs, start)
    return FeatureResult(name, grid.status, len(features), spec.output_dim, seconds, blank, opened.reader)


def _write_slide_features(
    path: Path, features: np.ndarray, coords: np.ndarray, job_encoder: _JobEncoder, attrs: dict, start: float
) -> float:
    """Write a slide's features file with its `attrs` and the encoder's; the slide's seconds since `start`."""
    seconds = time.perf_counter() - start
    encoder_attrs = {"encoder": job_encoder.spec.name, "weights_sha256": job_encoder.digest, "seconds": seconds}
    write_features(path, features, coords, {**encoder_attrs, **attrs})
    return seconds


def patch_batches(
    reader: str,
    dataset: SlidePatchDataset,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    threads: int | None = None,
    graphed_encoder: bool = False,
) -> tuple[str, Iterator[Batch], np.ndarray]:
    """(reader used, batches of `dataset`'s patches, the order int64 [N] of dataset rows in which the
    batches deliver them) for the `reader` choice (see `extract_features`): the OpenSlide reader keeps
    the coords' order, the tiles reader takes compact blocks (`reading_order`). A `graphed_encoder` (one
    replaying a CUDA graph a batch) leaves the GIL to more nvJPEG lanes (see `plan_lanes`)."""
    from memamba.features.jpeg_decoders import cpu_threads_available
    from memamba.features.jpeg_tiles import UnsupportedSlide
    from memamba.features.tile_lanes import plan_lanes

    listed = np.arange(len(dataset))
    if reader == "openslide" or (reader == "auto" and device.type != "cuda"):
        return "openslide", openslide_batches(dataset, device, batch_size, num_workers), listed
    geometry = (dataset.coords, dataset.patch_size_level0, dataset.read_size, dataset.output_size, device)
    try:
        lanes = plan_lanes(dataset.slide_path, *geometry, threads or cpu_threads_available(), graphed_encoder)
    except UnsupportedSlide as reason:
        if reader == "tiles":
            raise InputError(
                f"{dataset.slide_path}: cannot decode its tiles directly ({reason}): use --reader openslide"
            ) from None
        logger.info("%s: OpenSlide reader (%s)", dataset.slide_path.name, reason)
        return "openslide", openslide_batches(dataset, device, batch_size, num_workers), listed
    order = reading_order(dataset.coords, dataset.patch_size_level0)
    return "tiles", tile_batches(lanes, dataset, batch_size, order), order


def _resolve_device(device: str) -> torch.device:
    """`device` as a torch.device; an unknown or unavailable one raises InputError. Plain "cuda" on a
    node with several GPUs becomes the first card no other memamba job holds (on one GPU: that card)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {device!r}: pass --device cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but no CUDA GPU is available: pass --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: pass --device cpu, cuda or cuda:N")
    if resolved.type == "cuda" and resolved.index is None:
        from memamba.features.gpu_slot import free_gpu_index

        count = torch.cuda.device_count()
        resolved = torch.device("cuda", free_gpu_index(count) if count > 1 else torch.cuda.current_device())
        logger.info("using %s (one GPU per feature job)", resolved)
    return resolved


def _check_slide_opens(path: Path) -> None:
    """Raise InputError if OpenSlide cannot open `path` (the handle is closed again at once)."""
    import openslide

    if not path.is_file():
        raise InputError(f"{path}: slide file not found: check the slide path")
    try:
        openslide.OpenSlide(path).close()
    except (openslide.OpenSlideError, OSError) as error:
        raise InputError(f"{path}: OpenSlide cannot open the slide ({error}): check the slide file") from None
