"""Aperio SVS writer: a tiled-JPEG pyramidal TIFF that OpenSlide opens with its "aperio" reader."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from memamba.io import atomic_output

APERIO_SOFTWARE = "Aperio Image Library v12.0.16"
"""OpenSlide's aperio reader requires the first ImageDescription to start with "Aperio"."""
LEVEL_DOWNSAMPLE = 4


def pyramid_sizes(width: int, height: int, min_level_size: int) -> list[tuple[int, int]]:
    """Level sizes (width, height) px, each LEVEL_DOWNSAMPLE× smaller, down to the first level whose
    longer side is <= min_level_size; always at least two levels.
    """
    sizes = [(width, height)]
    while len(sizes) < 2 or max(sizes[-1]) > min_level_size:
        last_w, last_h = sizes[-1]
        if min(last_w, last_h) < LEVEL_DOWNSAMPLE:
            break
        sizes.append((last_w // LEVEL_DOWNSAMPLE, last_h // LEVEL_DOWNSAMPLE))
    return sizes


def aperio_description(
    size: tuple[int, int],
    level0_size: tuple[int, int],
    *,
    tile_size: int,
    quality: int,
    mpp: float,
    app_mag: int,
    properties: Mapping[str, str],
) -> str:
    """ImageDescription of one level: software line, geometry line, then "|key = value" properties."""
    (width, height), (full_w, full_h) = size, level0_size
    geometry = f"{full_w}x{full_h} [0,0 {full_w}x{full_h}] ({tile_size}x{tile_size})"
    if size != level0_size:
        geometry += f" -> {width}x{height}"
    fields = {"AppMag": str(app_mag), "MPP": f"{mpp:g}", **properties}
    pairs = "|".join(f"{key} = {value}" for key, value in fields.items())
    return f"{APERIO_SOFTWARE}\r\n{geometry} JPEG/RGB Q={quality}|{pairs}"


def write_aperio_svs(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    mpp: float,
    app_mag: int,
    tile_size: int = 256,
    quality: int = 85,
    min_level_size: int = 512,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Write `rgb` [H, W, 3] uint8 as a pyramidal Aperio SVS at `mpp` µm/px (level 0) and `app_mag`×.

    Every level is a tiled (tile_size px) JPEG page (YCbCr 2×2, `quality`), reduced levels by area
    averaging with downsample 4 (see `pyramid_sizes`); every description carries the Aperio
    "|AppMag = …|MPP = …" fields plus `properties`. No date is written, so equal pixels give equal bytes.
    """
    import cv2
    import tifffile

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"write_aperio_svs: expected an [H, W, 3] uint8 image, got {rgb.shape} {rgb.dtype}")
    level0_size = (rgb.shape[1], rgb.shape[0])
    with atomic_output(path) as temporary, tifffile.TiffWriter(temporary, bigtiff=rgb.nbytes > 2**31) as writer:
        level = np.ascontiguousarray(rgb)
        for size in pyramid_sizes(*level0_size, min_level_size):
            if (level.shape[1], level.shape[0]) != size:
                level = cv2.resize(level, size, interpolation=cv2.INTER_AREA)
            description = aperio_description(
                size, level0_size, tile_size=tile_size, quality=quality, mpp=mpp, app_mag=app_mag,
                properties=properties or {},
            )
            writer.write(
                level,
                photometric="rgb",
                tile=(tile_size, tile_size),
                compression="jpeg",
                compressionargs={"level": quality},
                subfiletype=0,
                description=description,
                metadata=None,
                software=False,
            )
