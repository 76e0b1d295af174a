"""The `memamba` command line: one subcommand per pipeline stage, heavy imports only when a stage runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from memamba import __version__
from memamba.errors import InputError

log = logging.getLogger("memamba")


def _cmd_demo(args: argparse.Namespace) -> None:
    from memamba.demo.cohort import write_demo_cohort

    write_demo_cohort(args.output, n_patients=args.patients, seed=args.seed)


def _cmd_tile(args: argparse.Namespace) -> None:
    from memamba.slide.tile import tile_slide

    result = tile_slide(
        args.slide,
        args.output,
        target_mpp=args.mpp,
        patch_size=args.patch_size,
        overlap=args.overlap,
        min_tissue_fraction=args.min_tissue,
        mpp_override=args.mpp_override,
        default_mpp=args.default_mpp,
        qc_png=args.qc,
        record_failures=args.record_failures,
    )
    log.info("%s: %s, %d patches in %.1f s", result.slide, result.status, result.n_patches, result.seconds)


def _cmd_manifest(args: argparse.Namespace) -> None:
    from memamba.slide.manifest import write_manifest

    write_manifest(args.coords, args.output)


def _cmd_features(args: argparse.Namespace) -> None:
    from memamba.features.extract import extract_features

    result = extract_features(
        args.slide,
        args.coords,
        args.output,
        encoder=args.encoder,
        weights=args.weights,
        allow_random_weights=args.allow_random_weights,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    log.info("%s: %s, %d patches in %.1f s", result.slide, result.status, result.n_patches, result.seconds)


def _cmd_genomics(args: argparse.Namespace) -> None:
    from memamba.genomics.build import build_cohort

    summary = build_cohort(
        args.table,
        args.groups,
        args.output,
        splits_dir=args.splits,
        n_folds=args.folds,
        seed=args.seed,
        nan_policy=args.nan_policy,
    )
    log.info("cohort: %s", json.dumps(summary, default=str))


def _parse_json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{option}: not valid JSON ({error}); pass an object like '{{\"epochs\": 20}}'") from None
    if not isinstance(value, dict):
        raise InputError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value


def _cmd_train(args: argparse.Namespace) -> None:
    model_params = _parse_json_object(args.model_params, "--model-params")
    train_params = _parse_json_object(args.train_params, "--train-params")
    from memamba.train.loop import train_fold

    train_fold(
        args.cohort, args.features, args.fold, args.model, model_params, train_params, args.output, device=args.device
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from memamba.evaluate.summarize import evaluate_model

    evaluate_model(args.run_dir, args.folds, bootstrap=args.bootstrap, seed=args.seed)


def _cmd_summarize(args: argparse.Namespace) -> None:
    from memamba.evaluate.summarize import write_summary_table

    write_summary_table(args.summaries, args.output)


def _cmd_report(args: argparse.Namespace) -> None:
    import yaml

    from memamba.report.html import write_report

    config: dict = {}
    if args.config is not None:
        try:
            config = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{args.config}: cannot read the config ({error})") from None
    write_report(args.output_dir, args.output, config=config)


def _cmd_config(args: argparse.Namespace) -> None:
    import yaml

    from memamba.io import atomic_output

    config = _parse_json_object(args.json, "--json")
    with atomic_output(args.output) as temporary:
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="write a synthetic planted-signal cohort (SVS slides + MCAT table)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=60, help="number of patients (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler=_cmd_demo)


def _add_tile(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tile", help="segment tissue and write a patch grid (coords h5) for one slide")
    parser.add_argument("slide", type=Path, help="slide file (any format OpenSlide reads)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="coords h5 to write")
    parser.add_argument("--mpp", type=float, default=0.5, help="target resolution in µm/px (default 0.5, ~20x)")
    parser.add_argument("--patch-size", type=int, default=256, help="patch size in px at --mpp (default 256)")
    parser.add_argument("--overlap", type=int, default=0, help="overlap between patches in px at --mpp")
    parser.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction of a kept patch")
    parser.add_argument("--mpp-override", type=float, default=None, help="slide µm/px replacing the metadata")
    parser.add_argument("--default-mpp", type=float, default=None, help="last-resort slide µm/px")
    parser.add_argument("--qc", type=Path, default=None, help="QC png to write (thumbnail, tissue, grid)")
    parser.add_argument(
        "--record-failures",
        action="store_true",
        help="write an empty grid with a 'failed: …' status instead of exiting 2 on an unreadable slide",
    )
    parser.set_defaults(handler=_cmd_tile)


def _add_manifest(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("manifest", help="collect per-slide tiling status into one CSV")
    parser.add_argument("coords", type=Path, nargs="+", help="coords h5 files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="manifest CSV to write")
    parser.set_defaults(handler=_cmd_manifest)


def _add_features(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("features", help="encode the patches of one slide into a features h5")
    parser.add_argument("slide", type=Path, help="slide file")
    parser.add_argument("coords", type=Path, help="coords h5 from `memamba tile`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="features h5 to write")
    parser.add_argument("--encoder", default="resnet50_trunc", help="encoder name (default resnet50_trunc)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, default=None, help="encoder weights (.safetensors or .pth)")
    weights.add_argument(
        "--allow-random-weights", action="store_true", help="run with random weights (demo and tests only)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading patches")
    parser.set_defaults(handler=_cmd_features)


def _add_genomics(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("genomics", help="build a patient-level cohort: labels, gene groups, splits")
    parser.add_argument("--table", type=Path, required=True, help="MCAT-style table (rows = slides)")
    parser.add_argument("--groups", default="mcat6", help="mcat6 or a CSV of gene groups (default mcat6)")
    parser.add_argument("--splits", type=Path, default=None, help="folder of splits_K.csv files (MCAT layout)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="cohort folder to write")
    parser.add_argument("--folds", type=int, default=5, help="folds when no --splits are given (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nan-policy", choices=("fail", "impute"), default="fail")
    parser.set_defaults(handler=_cmd_genomics)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one model on one cross-validation fold")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort folder from `memamba genomics`")
    parser.add_argument("--features", type=Path, default=None, help="folder of per-slide features h5 files")
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--model", default="memamba", help="memamba, snn or abmil (default memamba)")
    parser.add_argument("--model-params", default="{}", help="model hyper-parameters as a JSON object")
    parser.add_argument("--train-params", default="{}", help="training parameters as a JSON object")
    parser.add_argument("-o", "--output", type=Path, required=True, help="fold run folder to write")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(handler=_cmd_train)


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="summarise the folds of one cohort x model run")
    parser.add_argument("run_dir", type=Path, help="runs/{cohort}/{model} folder with fold_K subfolders")
    parser.add_argument("--folds", type=int, required=True)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the pooled C CI")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_cmd_evaluate)


def _add_summarize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("summarize", help="one summary.csv over cohorts x models x metrics")
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json files from `memamba evaluate`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="summary CSV to write")
    parser.set_defaults(handler=_cmd_summarize)


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write the self-contained HTML report of a run")
    parser.add_argument("output_dir", type=Path, help="the run's output folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write")
    parser.add_argument("--config", type=Path, default=None, help="config YAML to include in the report")
    parser.set_defaults(handler=_cmd_report)


def _add_config(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="write a workflow config (given as JSON) as YAML")
    parser.add_argument("--json", required=True, help="the resolved config as a JSON object")
    parser.add_argument("-o", "--output", type=Path, required=True, help="YAML file to write")
    parser.set_defaults(handler=_cmd_config)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo, _add_tile, _add_manifest, _add_features, _add_genomics,
    _add_train, _add_evaluate, _add_summarize, _add_report, _add_config,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (no heavy imports)."""
    parser = argparse.ArgumentParser(
        prog="memamba",
        description="ME-Mamba multimodal survival analysis: slides + genomics to a validated survival model.",
    )
    parser.add_argument("--version", action="version", version=f"memamba {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input gives one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.handler(args)
    except InputError as error:
        print(f"memamba {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
