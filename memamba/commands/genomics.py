"""`memamba genomics`: a patient-level cohort from a genomic table."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from memamba.commands._common import SubParsers

log = logging.getLogger("memamba")


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("genomics", help="build a patient-level cohort: labels, gene groups, splits")
    parser.add_argument("--table", type=Path, required=True, help="MCAT-style table (rows = slides)")
    parser.add_argument("--groups", default="mcat6", help="mcat6 or a CSV of gene groups (default mcat6)")
    parser.add_argument("--splits", type=Path, default=None, help="folder of splits_K.csv files (MCAT layout)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="cohort folder to write")
    parser.add_argument("--folds", type=int, default=5, help="folds when no --splits are given (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nan-policy", choices=("fail", "impute"), default="fail")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
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
