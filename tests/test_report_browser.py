"""The HTML report in a real browser (Debian's headless Chromium): the tables render and the KM figures decode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import fake_output_dir

from memamba.report.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); CI installs it"
)

# Appended to a copy of the report only: after load, record what the browser rendered in a body attribute.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(image => ({
    alt: image.alt, loaded: image.complete && image.naturalWidth > 0, width: image.getBoundingClientRect().width,
  }));
  const tables = [...document.querySelectorAll("table")].map(table => ({
    rows: table.querySelectorAll("tbody tr").length, height: table.getBoundingClientRect().height,
  }));
  document.body.setAttribute("data-probe", JSON.stringify({images, tables}));
});
</script>"""


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = fake_output_dir(tmp_path_factory.mktemp("browser"))
    return write_report(root, root / "report.html", config={"models": {"snn": {}}})


def test_tables_render_and_km_figures_decode_in_chromium(report_html: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    probe.write_text(report_html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "profile").stdout
    attribute = re.search(r'data-probe="([^"]*)"', dom)
    assert attribute, "the probe script did not run"
    rendered = json.loads(attribute.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    km = [image for image in rendered["images"] if image["alt"].startswith("Kaplan–Meier")]
    assert len(km) == 2  # median and tertile splits
    assert all(image["loaded"] and image["width"] > 100 for image in km)
    assert all(image["loaded"] for image in rendered["images"])
    assert rendered["tables"][0]["rows"] >= 1 and rendered["tables"][0]["height"] > 0
    assert max(table["rows"] for table in rendered["tables"]) >= 5  # the long summary table


def test_screenshot_of_the_report_is_not_blank(report_html: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1200,2400", report_html.as_uri(),
             profile=tmp_path / "profile")
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    coloured = np.abs(pixels.astype(int) - pixels.mean(axis=2, keepdims=True)).max(axis=2) > 40
    assert coloured.mean() > 0.002  # KM curves, tables' colours: far from an empty white page
