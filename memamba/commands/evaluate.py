"""`memamba evaluate` and `memamba summarize`: cross-fold summaries and the summary table."""

from __future__ import annotations

import argparse
from pathlib import Path

from memamba.commands._common import SubParsers


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("evaluate", help="summarise the folds of one cohort x model run")
    parser.add_argument("run_dir", type=Path, help="runs/{cohort}/{model} folder with fold_K subfolders")
    parser.add_argument("--folds", type=int, required=True)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the pooled C CI")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--risk-groups",
        nargs="+",
        default=["median", "tertiles"],
        metavar="SCHEME",
        help="risk group splits with a KM figure each: median, tertiles (default both)",
    )
    parser.set_defaults(handler=run)

    summarize = subparsers.add_parser("summarize", help="one summary.csv over cohorts x models x metrics")
    summarize.add_argument("summaries", type=Path, nargs="+", help="summary.json files from `memamba evaluate`")
    summarize.add_argument("-o", "--output", type=Path, required=True, help="summary CSV to write")
    summarize.set_defaults(handler=run_summarize)


def run(args: argparse.Namespace) -> None:
    from memamba.evaluate.summarize import evaluate_model

    evaluate_model(
        args.run_dir, args.folds, bootstrap=args.bootstrap, seed=args.seed, risk_group_schemes=args.risk_groups
    )


def run_summarize(args: argparse.Namespace) -> None:
    from memamba.evaluate.summarize import write_summary_table

    write_summary_table(args.summaries, args.output)
