"""`memamba predict`: a trained fold ensemble applied to new patients (risk, survival curve, risk group)."""

from __future__ import annotations

import argparse
from pathlib import Path

from memamba.commands._common import SubParsers


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("predict", help="apply a trained fold ensemble to new patients (CSV)")
    parser.add_argument("run_dir", type=Path, help="runs/{cohort}/{model} folder, trained and evaluated")
    parser.add_argument(
        "--cohort", type=Path, required=True, help="the new patients' cohort folder (`memamba genomics` on their table)"
    )
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        help="folder of the new patients' per-slide features h5 (omit for genomics-only models)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="predictions CSV to write")
    parser.add_argument(
        "--times",
        type=float,
        nargs="+",
        default=None,
        metavar="MONTHS",
        help="months of the survival columns (default: the folds' mean bin edges)",
    )
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from memamba.train.predict import predict_patients

    predict_patients(args.run_dir, args.cohort, args.features, args.output, times=args.times, device=args.device)
