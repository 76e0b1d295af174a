"""`memamba tile` and `memamba manifest`: patch grids of slides and their per-cohort status table."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from memamba.commands._common import SubParsers
from memamba.errors import InputError

if TYPE_CHECKING:
    from memamba.slide.tissue import TissueParams

log = logging.getLogger("memamba")


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("tile", help="segment tissue and write a patch grid (coords h5) for one slide")
    parser.add_argument("slide", type=Path, help="slide file (any format OpenSlide reads)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="coords h5 to write")
    parser.add_argument("--mpp", type=float, default=0.5, help="target resolution in µm/px (default 0.5, ~20x)")
    parser.add_argument("--patch-size", type=int, default=256, help="patch size in px at --mpp (default 256)")
    parser.add_argument("--overlap", type=int, default=0, help="overlap between patches in px at --mpp")
    parser.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction of a kept patch")
    parser.add_argument("--mpp-override", type=float, default=None, help="slide µm/px replacing the metadata")
    parser.add_argument(
        "--mpp-table",
        type=Path,
        default=None,
        help="CSV slide,mpp[,force]: slide µm/px used when the file states none (or always, with force=true)",
    )
    parser.add_argument("--default-mpp", type=float, default=None, help="last-resort slide µm/px")
    parser.add_argument(
        "--tissue",
        default="{}",
        metavar="JSON",
        help='tissue segmentation settings, e.g. \'{"threshold_method": "otsu", "reject_pen": true}\'',
    )
    parser.add_argument("--qc", type=Path, default=None, help="QC png to write (thumbnail, tissue, grid)")
    parser.add_argument(
        "--record-failures",
        action="store_true",
        help="write an empty grid with a 'failed: …' status instead of exiting 2 on an unreadable slide",
    )
    parser.set_defaults(handler=run)

    manifest = subparsers.add_parser("manifest", help="collect per-slide tiling status into one CSV")
    manifest.add_argument("coords", type=Path, nargs="+", help="coords h5 files")
    manifest.add_argument("-o", "--output", type=Path, required=True, help="manifest CSV to write")
    manifest.set_defaults(handler=run_manifest)


def run(args: argparse.Namespace) -> None:
    from memamba.slide.tile import tile_slide

    tissue = _tissue_params(args.tissue)
    result = tile_slide(
        args.slide,
        args.output,
        target_mpp=args.mpp,
        patch_size=args.patch_size,
        overlap=args.overlap,
        min_tissue_fraction=args.min_tissue,
        tissue=tissue,
        mpp_override=args.mpp_override,
        mpp_table=args.mpp_table,
        default_mpp=args.default_mpp,
        qc_png=args.qc,
        record_failures=args.record_failures,
    )
    log.info("%s: %s, %d patches in %.1f s", result.slide, result.status, result.n_patches, result.seconds)


def _tissue_params(text: str) -> TissueParams:
    """TissueParams from the --tissue JSON object; InputError on bad JSON, keys or values."""
    from memamba.slide.tissue import TissueParams

    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"--tissue: not valid JSON ({err}); give an object such as '{{\"reject_pen\": true}}'"
        ) from err
    if not isinstance(values, dict):
        raise InputError("--tissue: expected a JSON object of tissue settings, e.g. '{\"reject_pen\": true}'")
    try:
        return TissueParams.from_mapping(values)
    except (TypeError, ValueError) as err:
        raise InputError(f"--tissue: {err}") from err


def run_manifest(args: argparse.Namespace) -> None:
    from memamba.slide.manifest import write_manifest

    write_manifest(args.coords, args.output)
