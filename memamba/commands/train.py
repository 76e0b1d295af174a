"""`memamba train`: one model on one cross-validation fold."""

from __future__ import annotations

import argparse
from pathlib import Path

from memamba.commands._common import SubParsers, parse_json_object


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("train", help="train one model on one cross-validation fold")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort folder from `memamba genomics`")
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        help="folder of per-slide features h5 files (omit for a genomics-only run)",
    )
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument(
        "--model",
        default="memamba",
        help="model type: memamba, snn, abmil, … from the registry, or coxnet (default memamba)",
    )
    parser.add_argument("--model-params", default="{}", help="model hyper-parameters as a JSON object")
    parser.add_argument("--train-params", default="{}", help="training parameters as a JSON object")
    parser.add_argument(
        "--eval-params",
        default="{}",
        help='evaluation settings as a JSON object: {"uno_tau": months, "time_grid": [months], '
        '"time_grid_quantiles": [q]}',
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="fold run folder to write")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start from epoch 1 even if the folder holds a resumable state of the same run",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    model_params = parse_json_object(args.model_params, "--model-params")
    train_params = parse_json_object(args.train_params, "--train-params")
    evaluation = parse_json_object(args.eval_params, "--eval-params")
    from memamba.train.loop import train_fold

    train_fold(
        args.cohort,
        args.features,
        args.fold,
        args.model,
        model_params,
        train_params,
        args.output,
        device=args.device,
        evaluation=evaluation,
        resume=not args.no_resume,
    )
