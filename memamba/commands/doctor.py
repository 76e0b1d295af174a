"""`memamba doctor`: check the installation (OpenSlide, GPU, mamba-ssm, KeOps, Snakemake, output folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memamba.commands._common import SubParsers


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the installation; exit 1 when a required part is missing (with how to fix it)"
    )
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("results"),
                        help="output folder a run will write to (default results)")
    parser.add_argument("--keops-timeout", type=float, default=600.0,
                        help="seconds the KeOps probe may take (its first run compiles; default 600)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from memamba.doctor import FAIL, format_table, run_checks

    checks = run_checks(args.output_dir, keops_timeout_s=args.keops_timeout)
    sys.stdout.write(format_table(checks))
    if any(check.status == FAIL for check in checks):
        raise SystemExit(1)
