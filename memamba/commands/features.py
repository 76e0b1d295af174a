"""`memamba features`: encode the patches of one slide, or of several in one job (`--slide`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from memamba.commands._common import SubParsers
from memamba.errors import InputError

log = logging.getLogger("memamba")


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("features", help="encode the patches of one slide, or of several, into features h5")
    parser.add_argument("slide", type=Path, nargs="?", help="slide file")
    parser.add_argument("coords", type=Path, nargs="?", help="coords h5 from `memamba tile`")
    parser.add_argument("-o", "--output", type=Path, help="features h5 to write")
    parser.add_argument(
        "--slide",
        dest="slides",
        nargs=3,
        action="append",
        type=Path,
        metavar=("SLIDE", "COORDS", "OUTPUT"),
        help="instead of SLIDE COORDS -o OUTPUT, repeatable: encode several slides in one job, building the "
        "encoder once; a slide with bad input gets an empty features file whose status says why",
    )
    parser.add_argument("--encoder", default="resnet50_trunc", help="encoder name (default resnet50_trunc)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights",
        default=None,
        help="encoder weights: a .safetensors or .pth file, or `pretrained` (timm download; online only)",
    )
    weights.add_argument(
        "--allow-random-weights", action="store_true", help="run with random weights (demo and tests only)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading patches")
    parser.add_argument(
        "--reader",
        choices=("auto", "openslide", "tiles"),
        default="auto",
        help="patch reader: tiles decodes JPEG tiles on the device, openslide reads in worker processes, "
        "auto takes tiles on CUDA for tiled-JPEG TIFF/SVS (default auto)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads the tiles reader may use, libjpeg decoding beside the GPU's nvJPEG included "
        "(default: the cores this job may run on)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (faster on long runs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from memamba.features.extract import SlideJob, extract_slides

    single = (args.slide, args.coords, args.output)
    if args.slides and any(part is not None for part in single):
        raise InputError("give either SLIDE COORDS -o OUTPUT or --slide SLIDE COORDS OUTPUT (repeatable), not both")
    if not args.slides and any(part is None for part in single):
        raise InputError("give SLIDE COORDS -o OUTPUT, or --slide SLIDE COORDS OUTPUT once per slide")
    jobs = [SlideJob(*triple) for triple in (args.slides or [single])]
    results = extract_slides(
        jobs,
        record_failures=bool(args.slides),
        encoder=args.encoder,
        weights=args.weights,
        allow_random_weights=args.allow_random_weights,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        reader=args.reader,
        compile_model=args.compile,
        threads=args.threads,
    )
    for result in results:
        log.info(
            "%s: %s, %d patches in %.1f s (%s reader)",
            result.slide,
            result.status,
            result.n_patches,
            result.seconds,
            result.reader,
        )
