"""Open a whole-slide image with OpenSlide and resolve its level-0 pixel size (µm/px)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import openslide

from memamba.errors import InputError
from memamba.slide.mpp_table import MPP_RANGE, MppEntry

log = logging.getLogger(__name__)

TIFF_SIGNATURES: tuple[bytes, ...] = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
"""First four bytes of little/big-endian TIFF and BigTIFF files."""

MAX_ANISOTROPY = 0.10
"""Largest accepted relative difference between mpp-x and mpp-y."""


def open_slide(path: str | os.PathLike[str]) -> openslide.OpenSlide:
    """Open `path` with OpenSlide; raise InputError naming the file if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such slide file; check the path")
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as err:
        if _starts_like_tiff(path):
            raise InputError(
                f"{path}: a TIFF OpenSlide cannot read ({err}): truncated, damaged or not pyramidal; "
                "copy it again or re-export it as a pyramidal TIFF or SVS"
            ) from err
        raise InputError(
            f"{path}: not a slide format OpenSlide can read ({err}); convert it to a pyramidal TIFF or SVS"
        ) from err
    except openslide.OpenSlideError as err:
        raise InputError(f"{path}: cannot open slide ({err}); re-export or replace the file") from err


def _starts_like_tiff(path: Path) -> bool:
    """Whether the file starts with a TIFF or BigTIFF signature."""
    with open(path, "rb") as handle:
        return handle.read(4) in TIFF_SIGNATURES


def resolve_mpp(
    slide: openslide.OpenSlide,
    *,
    override: float | None = None,
    table_entry: MppEntry | None = None,
    default: float | None = None,
) -> tuple[float, str]:
    """Return the slide's level-0 pixel size in µm/px and where it came from.

    Sources, first that applies:
    "override" (one value given for this slide on the command line),
    "table_forced" (a per-slide table row with force=true: the file's metadata is known to be wrong),
    "metadata" (openslide.mpp-x/y),
    "objective_power" (10 / openslide.objective-power, an estimate),
    "table" (a per-slide table row, used when the file states neither),
    "default" (the configured last resort).
    Metadata that is anisotropic by more than 10 % or outside 0.05-20 µm/px raises InputError rather
    than being ignored; without any source, InputError.
    """
    name = slide_name(slide)
    if override is not None:
        _check_range(override, name, "the mpp override", "give a pixel size in µm/px")
        _warn_replaced(slide, override, "mpp override")
        return override, "override"
    if table_entry is not None:
        _check_range(table_entry.mpp, name, "the mpp table", "fix the slide's row")
    if table_entry is not None and table_entry.force:
        _warn_replaced(slide, table_entry.mpp, "forced mpp table entry")
        return table_entry.mpp, "table_forced"

    hint = "give a forced row (force=true) in the mpp table or an mpp override"
    metadata = _metadata_mpp(slide)
    if metadata is not None:
        _check_range(metadata, name, "openslide.mpp metadata", hint)
        return metadata, "metadata"

    power = _float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if power is not None and power > 0:
        mpp = 10.0 / power
        _check_range(mpp, name, f"10 / objective power {power:g}", hint)
        log.warning("%s: no mpp in metadata, estimated %.4g µm/px from objective power %g", name, mpp, power)
        return mpp, "objective_power"

    if table_entry is not None:
        log.info("%s: no mpp or objective power in metadata, %.4g µm/px from the mpp table", name, table_entry.mpp)
        return table_entry.mpp, "table"

    if default is not None:
        _check_range(default, name, "the default mpp", "give a pixel size in µm/px")
        log.warning("%s: no mpp or objective power in metadata, using default %.4g µm/px", name, default)
        return default, "default"

    raise InputError(
        f"{name}: no mpp in metadata and no objective power; add the slide to the mpp table or set a default mpp"
    )


def _warn_replaced(slide: openslide.OpenSlide, mpp: float, source: str) -> None:
    """Log that `mpp` (µm/px) from `source` replaces whatever the metadata says."""
    log.warning(
        "%s: %s %.4g µm/px replaces metadata mpp-x=%s mpp-y=%s",
        slide_name(slide),
        source,
        mpp,
        slide.properties.get(openslide.PROPERTY_NAME_MPP_X),
        slide.properties.get(openslide.PROPERTY_NAME_MPP_Y),
    )


def _metadata_mpp(slide: openslide.OpenSlide) -> float | None:
    """Mean of openslide.mpp-x and mpp-y (or the one present); InputError if they disagree."""
    values = [
        value
        for value in (
            _float_property(slide, openslide.PROPERTY_NAME_MPP_X),
            _float_property(slide, openslide.PROPERTY_NAME_MPP_Y),
        )
        if value is not None
    ]
    if not values:
        return None
    low, high = min(values), max(values)
    if low <= 0 or high - low > MAX_ANISOTROPY * low:
        raise InputError(
            f"{slide_name(slide)}: mpp-x/mpp-y {values} are not a usable isotropic pixel size; "
            "give a forced row (force=true) in the mpp table or an mpp override"
        )
    return sum(values) / len(values)


def _float_property(slide: openslide.OpenSlide, key: str) -> float | None:
    """Property `key` as a float, None when absent; InputError when not a number."""
    raw = slide.properties.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise InputError(f"{slide_name(slide)}: property {key}={raw!r} is not a number") from err


def _check_range(mpp: float, name: str, source: str, fix: str) -> None:
    """InputError (with `fix` as the advice) unless `mpp` lies in MPP_RANGE."""
    low, high = MPP_RANGE
    if not low <= mpp <= high:
        raise InputError(f"{name}: {mpp:.4g} µm/px from {source} is outside {low}-{high} µm/px; {fix}")


def slide_name(slide: openslide.OpenSlide) -> str:
    """Path of an open slide as it was given, for messages (OpenSlide keeps it in a private attribute)."""
    return str(slide._filename)
