"""The conda environments pin exactly the versions pyproject.toml pins, and cover each stage's extras."""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import inspect
import re
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement)
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _env_pip_entries(env_file: Path) -> list[str]:
    spec = yaml.safe_load(env_file.read_text())
    entries: list[str] = []
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            entries.extend(dependency["pip"])
    return entries


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_every_pyproject_requirement_is_pinned_exactly() -> None:
    project = _pyproject()
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("memamba[")]
    unpinned = [r for r in requirements if not PIN.match(r)]
    assert unpinned == []


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_pins_agree_with_pyproject(env_file: Path) -> None:
    project = _pyproject()
    every_pin = _pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        every_pin.update(_pins(extra))
    env_pins = _pins(_env_pip_entries(env_file))
    disagreements = {
        name: (version, every_pin.get(name)) for name, version in env_pins.items() if every_pin.get(name) != version
    }
    assert disagreements == {}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_pins_every_package_of_its_extra(env_file: Path) -> None:
    project = _pyproject()
    entries = _env_pip_entries(env_file)
    editable = [entry for entry in entries if entry.startswith("-e ..[")]
    assert len(editable) == 1, f"{env_file.name} must install the package once with its stage extra"
    extra = editable[0].removeprefix("-e ..[").removesuffix("]")
    wanted = _pins(project["dependencies"]) | _pins(project["optional-dependencies"][extra])
    assert _pins(entries) == wanted


def test_every_rule_environment_exists() -> None:
    referenced = set()
    for rule_file in (ROOT / "workflow" / "rules").glob("*.smk"):
        referenced.update(re.findall(r'"\.\./\.\./(envs/[^"]+)"', rule_file.read_text()))
    assert referenced, "rules name no conda environments"
    assert sorted(path for path in referenced if not (ROOT / path).exists()) == []


OPTIONAL_IMPORTS = {"mamba_ssm"}
"""Imported only when installed (the `gpu` extra, installed against the user's CUDA; see README)."""


def _rule_commands() -> list[tuple[str, str]]:
    """(conda environment, memamba subcommand) of every rule whose shell runs `memamba`."""
    pairs = []
    for rule_file in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=\s*rule\b)", rule_file.read_text(), flags=re.MULTILINE):
            env = re.search(r'conda:\s*\n\s*"\.\./\.\./(envs/[^"]+)"', block)
            command = re.search(r'shell:\s*\n\s*"[^"]*?\bmemamba (\w+)', block)
            if env and command:
                pairs.append((env.group(1), command.group(1)))
    return pairs


def _memamba_module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.exists()), None)


def _imported_names(source: str) -> set[str]:
    """Every module named by an import statement (module-level or inside functions) of `source`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _third_party_imports(subcommand: str) -> set[str]:
    """Top-level third-party modules that a `memamba` subcommand can import, following memamba's own imports
    and, as Python does, the `__init__` of every package on the way."""
    from memamba.cli import build_parser

    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    handler = subparsers.choices[subcommand].get_default("handler")
    pending, seen, third_party = list(_imported_names(textwrap.dedent(inspect.getsource(handler)))), set(), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        if parts[0] != "memamba":
            third_party.add(parts[0])
            continue
        pending.extend(".".join(parts[:depth]) for depth in range(1, len(parts)))
        if (path := _memamba_module_file(name)) is not None:
            pending.extend(_imported_names(path.read_text()))
    return third_party - set(sys.stdlib_module_names) - OPTIONAL_IMPORTS


@pytest.mark.parametrize(("env", "subcommand"), _rule_commands(), ids=lambda value: str(value))
def test_rule_environment_pins_everything_its_command_imports(env: str, subcommand: str) -> None:
    distributions = importlib.metadata.packages_distributions()
    needed = {_normalise(dist) for module in _third_party_imports(subcommand) for dist in distributions[module]}
    pinned = set(_pins(_env_pip_entries(ROOT / env)))
    assert sorted(needed - pinned) == []
