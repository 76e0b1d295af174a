"""The `memamba` command line: one subcommand per pipeline stage (defined in memamba/commands/)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from memamba import __version__
from memamba.commands import demo, doctor, evaluate, features, genomics, predict, report, tile, train
from memamba.errors import InputError

COMMAND_MODULES = (demo, tile, features, genomics, train, evaluate, predict, report, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (no heavy imports)."""
    parser = argparse.ArgumentParser(
        prog="memamba",
        description="ME-Mamba multimodal survival analysis: slides + genomics to a validated survival model.",
    )
    parser.add_argument("--version", action="version", version=f"memamba {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
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
