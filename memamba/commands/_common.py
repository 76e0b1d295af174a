"""Helpers shared by the subcommands: argument types and JSON options."""

from __future__ import annotations

import argparse
import json

from memamba.errors import InputError

SubParsers = argparse._SubParsersAction


def parse_json_object(text: str, option: str) -> dict:
    """A JSON object given on the command line; InputError naming the option otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{option}: not valid JSON ({error}); pass an object like '{{\"epochs\": 20}}'") from None
    if not isinstance(value, dict):
        raise InputError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value
