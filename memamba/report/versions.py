"""Installed versions of the packages a run depends on, for the report."""

from __future__ import annotations

from importlib import metadata

PACKAGES = (
    "memamba", "torch", "timm", "openslide-python", "openslide-bin", "scikit-survival", "snakemake",
    "numpy", "pandas",
)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Distribution name -> installed version ("not installed" where absent)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
