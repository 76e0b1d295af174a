"""The conda environments pin exactly the versions pyproject.toml pins, and cover each stage's extras."""

from __future__ import annotations

import re
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
