"""`memamba demo`: write a synthetic planted-signal cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

from memamba.commands._common import SubParsers


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("demo", help="write a synthetic planted-signal cohort (SVS slides + MCAT table)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=60, help="number of patients (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from memamba.demo.cohort import write_demo_cohort

    write_demo_cohort(args.output, n_patients=args.patients, seed=args.seed)
