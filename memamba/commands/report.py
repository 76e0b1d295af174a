"""`memamba report` and `memamba config`: the HTML report and the resolved workflow config."""

from __future__ import annotations

import argparse
from pathlib import Path

from memamba.commands._common import SubParsers, parse_json_object
from memamba.errors import InputError


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("report", help="write the self-contained HTML report of a run")
    parser.add_argument("output_dir", type=Path, help="the run's output folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write")
    parser.add_argument("--config", type=Path, default=None, help="config YAML to include in the report")
    parser.set_defaults(handler=run)

    config = subparsers.add_parser("config", help="write a workflow config (given as JSON) as YAML")
    config.add_argument("--json", required=True, help="the resolved config as a JSON object")
    config.add_argument("-o", "--output", type=Path, required=True, help="YAML file to write")
    config.set_defaults(handler=run_config)


def run(args: argparse.Namespace) -> None:
    import yaml

    from memamba.report.html import write_report

    config: dict = {}
    if args.config is not None:
        try:
            config = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{args.config}: cannot read the config ({error})") from None
    write_report(args.output_dir, args.output, config=config)


def run_config(args: argparse.Namespace) -> None:
    import yaml

    from memamba.io import atomic_output

    config = parse_json_object(args.json, "--json")
    with atomic_output(args.output) as temporary:
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))
