"""The tiling rules of the real workflow: one job per slide, failures recorded, reruns do nothing."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "tests" / "data" / "slides"
COHORT_SLIDES = ["cmu-1-small-region.svs", "boxes.tiff", "unreadable.svs", "unopenable.tiff"]


def _config(tmp_path: Path) -> Path:
    """A real-data cohort of the fixture slides, with a forced mpp table row for boxes.tiff's absurd mpp."""
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    for name in COHORT_SLIDES:
        shutil.copy(SLIDES / name, slides_dir / name)
    table = tmp_path / "table.csv"
    rows = [f"TCGA-XX-000{i},{name},10.0,0" for i, name in enumerate(COHORT_SLIDES)]
    table.write_text("case_id,slide_id,survival_months,censorship\n" + "\n".join(rows) + "\n")
    mpp_table = tmp_path / "mpp.csv"
    mpp_table.write_text("slide,mpp,force\nboxes.tiff,4.0,true\n")
    config = {
        "output_dir": str(tmp_path / "out"),
        "cohorts": {"fixtures": {"table": str(table), "slides_dir": str(slides_dir)}},
        "tiling": {"target_mpp": 8.0, "patch_size": 32, "mpp_table": str(mpp_table), "tissue": {"reject_pen": True}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _snakemake(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "snakemake", "tiles_all", "--cores", "2", *args, "--configfile", str(config)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_tiling_target_runs_one_job_per_slide_records_failures_and_reruns_nothing(tmp_path):
    config = _config(tmp_path)
    plan = _snakemake(config, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout.split("Job stats:", 1)[1], flags=re.MULTILINE))
    assert (counts["tile"], counts["tile_manifest"]) == (str(len(COHORT_SLIDES)), "1")

    run = _snakemake(config)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out" / "tiles" / "fixtures" / "manifest.csv", newline="") as handle:
        rows = {row["slide"]: row for row in csv.DictReader(handle)}
    assert rows["cmu-1-small-region"]["status"] == "ok" and rows["cmu-1-small-region"]["mpp_source"] == "metadata"
    assert rows["boxes"]["status"] == "ok" and rows["boxes"]["mpp_source"] == "table_forced"
    assert rows["unreadable"]["status"].startswith("failed:") and rows["unopenable"]["status"].startswith("failed:")

    rerun = _snakemake(config, "--dry-run")
    assert rerun.returncode == 0 and "Nothing to be done" in rerun.stdout + rerun.stderr
