"""Tiling failures: each kind of bad slide becomes a recorded status (never a crash of the cohort)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from memamba.errors import InputError
from memamba.slide import read_coords, tile_slide, write_manifest

SLIDES = Path(__file__).parent / "data" / "slides"
CMU = SLIDES / "cmu-1-small-region.svs"


def _truncated(folder: Path) -> Path:
    """The real CMU slide cut to its first half: the header opens, later tiles lie past the end."""
    data = CMU.read_bytes()
    path = folder / "truncated.svs"
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(folder: Path) -> Path:
    """A CSV file given a slide extension."""
    path = folder / "notes.svs"
    path.write_text("case_id,slide_id\nTCGA-XX-0001,slide\n", encoding="utf-8")
    return path


def _png(folder: Path) -> Path:
    """A PNG image (not a slide format) named like an Aperio slide."""
    path = folder / "photo.svs"
    ok, encoded = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def _no_mpp(folder: Path) -> Path:
    """A tiled TIFF with tissue but neither pixel size nor objective power."""
    rgb = np.full((512, 512, 3), 240, np.uint8)
    rgb[100:400, 100:400] = (190, 90, 170)
    path = folder / "no_mpp.tiff"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(256, 256))
    return path


def _copy(name: str) -> Callable[[Path], Path]:
    """Writer of a copy of fixture `name` into a folder."""
    return lambda folder: Path(shutil.copy(SLIDES / name, folder / name))


BAD_SLIDES = {
    "unopenable": (_copy("unopenable.tiff"), "cannot open slide"),
    "truncated": (_truncated, "truncated"),
    "corrupt_tile": (_copy("unreadable.svs"), "corrupt"),
    "missing_mpp": (_no_mpp, "no mpp"),
    "non_image": (_text, "not a slide format"),
    "wrong_extension": (_png, "not a slide format"),
}


@pytest.mark.parametrize("kind", BAD_SLIDES)
def test_bad_slide_is_recorded_as_failed_with_its_reason(kind, tmp_path):
    make, reason = BAD_SLIDES[kind]
    slide = make(tmp_path)
    result = tile_slide(slide, tmp_path / "out.h5", qc_png=tmp_path / "out.png", record_failures=True)
    coords, attrs = read_coords(tmp_path / "out.h5")
    assert result.status.startswith("failed:") and reason in result.status and slide.name in result.status
    assert attrs["status"] == result.status and coords.shape == (0, 2)
    assert cv2.imread(str(tmp_path / "out.png")) is not None


@pytest.mark.parametrize("kind", BAD_SLIDES)
def test_bad_slide_without_recording_raises_naming_it_and_writes_nothing(kind, tmp_path):
    make, _ = BAD_SLIDES[kind]
    slide = make(tmp_path)
    with pytest.raises(InputError, match=slide.name):
        tile_slide(slide, tmp_path / "out.h5", qc_png=tmp_path / "out.png")
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.png").exists()


def test_real_slide_with_another_vendors_extension_is_read_by_content(tmp_path):
    slide = Path(shutil.copy(CMU, tmp_path / "cmu.ndpi"))
    result = tile_slide(slide, tmp_path / "cmu.h5")
    assert (result.status, result.mpp_source) == ("ok", "metadata") and result.n_patches > 0


def test_manifest_records_every_kind_of_failure_beside_good_slides(tmp_path):
    outputs = [tmp_path / "cmu.h5"]
    tile_slide(CMU, outputs[0])
    for kind, (make, _) in BAD_SLIDES.items():
        folder = tmp_path / kind
        folder.mkdir()
        outputs.append(folder / f"{kind}.h5")
        tile_slide(make(folder), outputs[-1], record_failures=True)
    write_manifest(outputs, tmp_path / "manifest.csv")
    with open(tmp_path / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"].split(":")[0] for row in rows] == ["ok"] + ["failed"] * len(BAD_SLIDES)
    assert rows[0]["mpp_source"] == "metadata" and int(rows[0]["n_patches"]) > 0
    assert all(int(row["n_patches"]) == 0 and float(row["seconds"]) >= 0 for row in rows[1:])


def test_cli_records_a_truncated_slide_and_exits_0_or_exits_2_without_recording(tmp_path):
    slide = _truncated(tmp_path)
    command = [sys.executable, "-m", "memamba", "tile", str(slide)]
    recorded = subprocess.run([*command, "-o", str(tmp_path / "a.h5"), "--record-failures"], capture_output=True)
    assert recorded.returncode == 0 and read_coords(tmp_path / "a.h5")[1]["status"].startswith("failed:")
    strict = subprocess.run([*command, "-o", str(tmp_path / "b.h5")], capture_output=True, text=True)
    assert strict.returncode == 2 and "truncated.svs" in strict.stderr and not (tmp_path / "b.h5").exists()
