"""The HTML report: tables and images of a (small, fake) output folder, all embedded and escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from memamba.evaluate.summarize import evaluate_model, write_summary_table
from memamba.report.html import write_report
from memamba.train.engine import EpochResult
from memamba.train.outputs import write_curve


def fake_output_dir(root: Path) -> Path:
    """runs/tcga_demo/snn with two folds (risks, metrics, curves) evaluated, summary.csv and one QC tile."""
    run_dir = root / "runs" / "tcga_demo" / "snn"
    months = np.linspace(2.0, 50.0, 16)
    for fold in range(2):
        fold_dir = run_dir / f"fold_{fold}"
        fold_dir.mkdir(parents=True)
        pd.DataFrame(
            {"case_id": [f"TCGA-{fold}{i:02d}" for i in range(16)], "risk": -months + 10 * np.sin(months),
             "survival_months": months, "censorship": np.arange(16) % 3 == 0, "time_bin": 0}
        ).astype({"censorship": int}).to_csv(fold_dir / "risks.csv", index=False)
        metrics = {"c_index": {"value": 0.61 + 0.1 * fold, "reason": None}}
        (fold_dir / "metrics.json").write_text(json.dumps({"epochs": 2, "metrics": metrics}))
        write_curve(fold_dir / "curve.csv", [
            EpochResult(epoch=epoch, train_loss=1.0 / epoch, train_c_index={"value": 0.5 + 0.1 * epoch,
                                                                           "reason": None})
            for epoch in (1, 2)
        ])
    evaluate_model(run_dir, 2, bootstrap=10)
    write_summary_table([run_dir / "summary.json"], root / "summary.csv")
    (root / "tiles" / "tcga_demo").mkdir(parents=True)
    Image.new("RGB", (600, 400), (200, 120, 180)).save(root / "tiles" / "tcga_demo" / "TCGA-00-0000-01Z.png")
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = fake_output_dir(tmp_path_factory.mktemp("out"))
    config = {"output_dir": str(root), "note": "<script>alert(1)</script>"}
    return write_report(root, root / "report.html", config=config).read_text()


def test_report_contains_the_summary_table_rows(report: str) -> None:
    rows = re.findall(r"<tr>(.*?)</tr>", report, flags=re.S)
    summary_rows = [row for row in rows if "tcga_demo" in row]
    assert any("c_index_pooled" in row for row in summary_rows)
    assert any("0.71" in row for row in summary_rows)  # fold 1's C-index


def test_report_embeds_km_training_curve_and_qc_images(report: str) -> None:
    sources = re.findall(r'<img src="([^"]+)"', report)
    assert len(sources) == 4  # KM median, KM tertiles, training curves, one QC thumbnail
    assert 'alt="Kaplan–Meier curves (tertiles)' in report
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "TCGA-00-0000-01Z" in report


def test_report_puts_models_side_by_side_with_mean_sd_and_pooled_ci(report: str) -> None:
    comparison = report.split("<h2>Models side by side</h2>")[1].split("</table>")[0]
    assert "0.66 ± 0.07071" in comparison  # c_index of folds 0.61 and 0.71
    assert re.search(r"\[0\.\d+, 0\.\d+\]", comparison)


def test_report_has_no_external_links(report: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report)


def test_report_escapes_config_text(report: str) -> None:
    assert "<script>" not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report


def test_report_of_an_empty_output_folder_says_what_is_missing(tmp_path: Path) -> None:
    text = write_report(tmp_path, tmp_path / "report.html", config={}).read_text()
    assert "summary.csv not found" in text
    assert "no QC images" in text
