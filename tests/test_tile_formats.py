"""Slide formats: every format we can write (or hold) a real file of is opened by its OpenSlide vendor
reader and tiled at its metadata mpp.

Not covered (no writer here and no small public file shipped): Ventana BIF, Sakura SVSlide, Hamamatsu
VMS/VMU, Olympus VSI, Zeiss CZI and the other OpenSlide 4 vendors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import pytest
import tifffile

from memamba.demo.svs import aperio_description, write_aperio_svs
from memamba.slide import TissueParams, open_slide, read_coords, tile_slide

SLIDES = Path(__file__).parent / "data" / "slides"
SIZE = 1536
MPP = 0.25
"""Level-0 pixel size (µm/px, 40x) of every generated slide."""

TAGS = {"resolution": (1e4 / MPP, 1e4 / MPP), "resolutionunit": "CENTIMETER"}
SPACING = """<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030"
 PMSVR="IDoubleArray">&quot;{mm}&quot; &quot;{mm}&quot;</Attribute>"""
"""Philips pixel spacing (mm) of the slide or of one pyramid level."""
PHILIPS_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<DataObject ObjectType="DPUfsImport">
<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray"><Array>
<DataObject ObjectType="DPScannedImage">
<Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" PMSVR="IString">WSI</Attribute>
{spacing}
<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" Element="0x8B01"
 PMSVR="IDataObjectArray"><Array>
<DataObject ObjectType="PixelDataRepresentation">{spacing}</DataObject>
<DataObject ObjectType="PixelDataRepresentation">{spacing_half}</DataObject>
</Array></Attribute>
</DataObject></Array></Attribute>
</DataObject>"""
LEICA_XML = """<?xml version="1.0" encoding="utf-8"?>
<scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">
<collection name="synthetic" sizeX="{nm_collection}" sizeY="{nm_collection}">
<image name="main"><pixels sizeX="{px}" sizeY="{px}">
<dimension sizeX="{px}" sizeY="{px}" ifd="0"/><dimension sizeX="{half}" sizeY="{half}" ifd="1"/></pixels>
<view sizeX="{nm}" sizeY="{nm}" offsetX="0" offsetY="0" spacingZ="0"/>
<scanSettings><objectiveSettings><objective>40</objective></objectiveSettings><illuminationSettings>
<illuminationSource>brightfield</illuminationSource></illuminationSettings></scanSettings>
</image></collection></scn>"""
NDPI_TAGS = [(65420, 4, 1, 1, True), (65421, 11, 1, 40.0, True), (65422, 11, 1, 0.0, True), (65423, 11, 1, 0.0, True)]
"""Hamamatsu private tags: format flag, source lens (objective), x and y offsets."""


def _tissue_rgb() -> np.ndarray:
    """Glass-white SIZE x SIZE image uint8 [h, w, 3] with a textured pink-purple disc in the middle."""
    rng = np.random.default_rng(0)
    rgb = np.full((SIZE, SIZE, 3), 240, np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (0.4 * SIZE) ** 2
    texture = cv2.GaussianBlur(rng.normal(0, 25, (SIZE, SIZE)).astype(np.float32), (0, 0), 2)[..., None]
    rgb[disc] = np.clip(np.array([190, 90, 170]) + texture[disc], 0, 255).astype(np.uint8)
    return rgb


def _half(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _aperio_jpeg(path: Path, rgb: np.ndarray) -> None:
    write_aperio_svs(path, rgb, mpp=MPP, app_mag=40, min_level_size=256)


def _aperio_jp2k(compression: int) -> Callable[[Path, np.ndarray], None]:
    """Writer of an Aperio SVS with JPEG 2000 tiles: 33003 holds YCbCr components, 33005 RGB."""

    def write(path: Path, rgb: np.ndarray) -> None:
        with tifffile.TiffWriter(path) as writer:
            for level in (rgb, _half(rgb)):
                size = (level.shape[1], level.shape[0])
                description = aperio_description(
                    size, (SIZE, SIZE), tile_size=256, quality=100, mpp=MPP, app_mag=40, properties={}
                )
                if compression == 33003:  # Aperio stores YCbCr (JPEG's full-range BT.601) without a TIFF hint
                    level = cv2.cvtColor(level, cv2.COLOR_RGB2YCrCb)[..., [0, 2, 1]].copy()
                writer.write(
                    level,
                    photometric="rgb",
                    tile=(256, 256),
                    compression=compression,
                    description=description,
                    metadata=None,
                    software=False,
                )

    return write


def _generic_tiff(path: Path, rgb: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as writer:
        for index, level in enumerate((rgb, _half(rgb))):
            scale = level.shape[1] / SIZE
            writer.write(
                level,
                photometric="rgb",
                tile=(256, 256),
                compression="jpeg",
                subfiletype=int(index > 0),
                resolution=(scale * 1e4 / MPP, scale * 1e4 / MPP),
                resolutionunit="CENTIMETER",
                metadata=None,
            )


def _philips_tiff(path: Path, rgb: np.ndarray) -> None:
    spacing, spacing_half = SPACING.format(mm=MPP / 1000), SPACING.format(mm=2 * MPP / 1000)
    philips_xml = PHILIPS_XML.format(spacing=spacing, spacing_half=spacing_half)
    with tifffile.TiffWriter(path) as writer:
        for index, level in enumerate((rgb, _half(rgb))):
            writer.write(
                level,
                photometric="rgb",
                tile=(256, 256),
                compression="jpeg",
                subfiletype=int(index > 0),
                description=philips_xml if index == 0 else None,
                software="Philips DP v1.0",
                metadata=None,
            )


def _leica_scn(path: Path, rgb: np.ndarray) -> None:
    """Leica SCN: the main image must be smaller than the collection (else it is the macro image), so the
    slide is 1 px wider and taller than the image."""
    nm = round(SIZE * MPP * 1000)
    xml = LEICA_XML.format(nm=nm, nm_collection=nm + round(MPP * 1000), px=SIZE, half=SIZE // 2)
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for index, level in enumerate((rgb, _half(rgb))):
            extra = {"description": xml, **TAGS} if index == 0 else {}
            writer.write(
                level, photometric="rgb", tile=(256, 256), compression="jpeg", metadata=None, software=False, **extra
            )


def _hamamatsu_ndpi(path: Path, rgb: np.ndarray) -> None:
    """NDPI: one JPEG strip per level, Hamamatsu's private tags, resolution per level."""
    with tifffile.TiffWriter(path) as writer:
        for level in (rgb, _half(rgb)):
            scale = level.shape[1] / SIZE
            writer.write(
                level,
                photometric="rgb",
                rowsperstrip=level.shape[0],
                compression="jpeg",
                resolution=(scale * 1e4 / MPP, scale * 1e4 / MPP),
                resolutionunit="CENTIMETER",
                extratags=[*NDPI_TAGS, (65424, 9, 1, 0, True)],
                metadata=None,
                software=False,
            )


def _mirax(path: Path, rgb: np.ndarray) -> None:
    """MIRAX: an empty `.mrxs` beside a folder of Slidedat.ini, Index.dat and one data file of JPEG
    images (256 px, no overlap, no camera position record, two levels: level 1 concatenates 2 x 2)."""
    folder = path.with_suffix("")
    folder.mkdir()
    path.write_bytes(b"")
    per_side = SIZE // 256
    data, pages = bytearray(), []
    for zoom, level in enumerate((rgb, _half(rgb))):
        concat, records = 2**zoom, []
        for y in range(0, per_side, concat):
            for x in range(0, per_side, concat):
                top, left = y // concat * 256, x // concat * 256
                jpeg = imagecodecs.jpeg8_encode(
                    np.ascontiguousarray(level[top : top + 256, left : left + 256]), level=95
                )
                records.append((y * per_side + x, len(data), len(jpeg), 0))
                data += jpeg
        pages.append(records)
    (folder / "Data0000.dat").write_bytes(bytes(data))
    (folder / "Index.dat").write_bytes(_mirax_index(b"01.02SYNTHETIC", pages))
    (folder / "Slidedat.ini").write_text(_mirax_slidedat(per_side, len(pages)))


def _mirax_index(header: bytes, pages: list[list[tuple[int, int, int, int]]]) -> bytes:
    """Index.dat: version + slide id, the hierarchical root pointer (no non-hierarchical records), a table
    of one pointer per zoom level, each to (0, pointer to its only data page), each page (count, next = 0,
    then (image index, offset, length, file number) per image); little-endian int32."""
    index = bytearray(header)
    root = len(index)
    index += bytes(8)
    table = len(index)
    index += bytes(4 * len(pages))
    struct.pack_into("<ii", index, root, table, 0)
    for zoom, records in enumerate(pages):
        start = len(index)
        struct.pack_into("<i", index, table + 4 * zoom, start)
        index += struct.pack("<iiii", 0, start + 8, len(records), 0)
        for record in records:
            index += struct.pack("<iiii", *record)
    return bytes(index)


def _mirax_slidedat(per_side: int, n_levels: int) -> str:
    """Slidedat.ini of a MIRAX slide of per_side x per_side 256 px images at MPP (level 0)."""
    sections = "".join(
        f"[LEVEL_{zoom}]\nIMAGE_CONCAT_FACTOR={int(zoom > 0)}\nOVERLAP_X=0\nOVERLAP_Y=0\n"
        f"MICROMETER_PER_PIXEL_X={MPP * 2**zoom}\nMICROMETER_PER_PIXEL_Y={MPP * 2**zoom}\n"
        "IMAGE_FILL_COLOR_BGR=16777215\nDIGITIZER_WIDTH=256\nDIGITIZER_HEIGHT=256\nIMAGE_FORMAT=JPEG\n"
        for zoom in range(n_levels)
    )
    levels = "".join(f"HIER_0_VAL_{zoom}_SECTION=LEVEL_{zoom}\n" for zoom in range(n_levels))
    return (
        f"[GENERAL]\nSLIDE_VERSION=01.03\nSLIDE_ID=SYNTHETIC\nIMAGENUMBER_X={per_side}\nIMAGENUMBER_Y={per_side}\n"
        "OBJECTIVE_MAGNIFICATION=40\n[HIERARCHICAL]\nHIER_COUNT=1\nNONHIER_COUNT=0\nINDEXFILE=Index.dat\n"
        f"HIER_0_NAME=Slide zoom level\nHIER_0_COUNT={n_levels}\n{levels}"
        f"[DATAFILE]\nFILE_COUNT=1\nFILE_0=Data0000.dat\n{sections}"
    )


FORMATS = {
    "aperio_jpeg": (".svs", "aperio", _aperio_jpeg),
    "aperio_jp2k_ycbcr_33003": (".svs", "aperio", _aperio_jp2k(33003)),
    "aperio_jp2k_rgb_33005": (".svs", "aperio", _aperio_jp2k(33005)),
    "generic_tiled_tiff": (".tiff", "generic-tiff", _generic_tiff),
    "philips_tiff": (".tiff", "philips", _philips_tiff),
    "leica_scn": (".scn", "leica", _leica_scn),
    "hamamatsu_ndpi": (".ndpi", "hamamatsu", _hamamatsu_ndpi),
    "mirax": (".mrxs", "mirax", _mirax),
}


@pytest.fixture(scope="module")
def tissue_rgb() -> np.ndarray:
    return _tissue_rgb()


@pytest.mark.parametrize("name", FORMATS)
def test_format_opens_with_its_vendor_reader_and_true_pixels(name, tissue_rgb, tmp_path):
    suffix, vendor, write = FORMATS[name]
    path = tmp_path / f"slide{suffix}"
    write(path, tissue_rgb)
    with open_slide(path) as slide:
        assert slide.properties["openslide.vendor"] == vendor
        assert SIZE <= min(slide.dimensions) <= max(slide.dimensions) <= SIZE + 1  # see _leica_scn
        pixels = np.asarray(slide.read_region((0, 0), 0, (SIZE, SIZE)).convert("RGB")).astype(int)
    assert np.abs(pixels - tissue_rgb).mean() < 2.0


@pytest.mark.parametrize("name", FORMATS)
def test_format_is_tiled_at_its_metadata_mpp(name, tissue_rgb, tmp_path):
    suffix, _, write = FORMATS[name]
    path = tmp_path / f"slide{suffix}"
    write(path, tissue_rgb)
    result = tile_slide(path, tmp_path / "slide.h5", target_mpp=0.5, patch_size=128)
    coords, attrs = read_coords(tmp_path / "slide.h5")
    assert (result.status, result.slide_mpp, result.mpp_source) == ("ok", pytest.approx(MPP), "metadata")
    assert attrs["patch_size_level0"] == 256
    centre = (coords + 128 - SIZE / 2) / (0.4 * SIZE)
    assert 12 <= len(coords) <= 24 and ((centre**2).sum(axis=1) < 1.0).all()


def test_dicom_fixture_is_tiled(tmp_path):
    params = TissueParams(median_kernel=1, closing_kernel=0, min_tissue_area_um2=0.0)
    with open_slide(SLIDES / "boxes_0.dcm") as slide:
        assert slide.properties["openslide.vendor"] == "dicom"
    result = tile_slide(
        SLIDES / "boxes_0.dcm",
        tmp_path / "boxes.h5",
        target_mpp=1.0,
        patch_size=4,
        min_tissue_fraction=0.1,
        tissue=params,
    )
    assert (result.status, result.slide_mpp, result.mpp_source) == ("ok", 0.499, "metadata")
    assert result.n_patches > 0
