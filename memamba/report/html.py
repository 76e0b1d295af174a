"""The self-contained HTML report of an output folder: summary table, KM curves, training curves, QC, config.

Every image is embedded as a base64 PNG, the style sheet is inline, and every piece of text goes through
html.escape: the file can be mailed or archived alone.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from memamba import __version__
from memamba.io import atomic_output
from memamba.report.figures import png_data_uri, thumbnail_png, training_curves_png
from memamba.report.versions import package_versions

log = logging.getLogger(__name__)

MAX_THUMBNAILS = 6
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.4em; text-align: center; font-size: 0.8em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.note { color: #666; font-size: 0.9em; }
"""


def write_report(
    output_dir: str | os.PathLike[str], out_html: str | os.PathLike[str], *, config: dict[str, Any]
) -> Path:
    """Write one HTML file describing the results under `output_dir` (summary.csv, runs/, tiles/)."""
    output_dir = Path(output_dir)
    sections = [
        _comparison_section(output_dir / "summary.csv"),
        _summary_section(output_dir / "summary.csv"),
        *(_run_section(path.parent) for path in sorted(output_dir.glob("runs/*/*/summary.json"))),
        _qc_section(output_dir / "tiles"),
        _config_section(config),
        _versions_section(),
    ]
    title = f"memamba report: {output_dir.resolve().name}"
    document = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{_text(title)}</h1>",
            f'<p class="note">memamba {_text(__version__)}; output folder {_text(str(output_dir))}</p>',
            *sections,
            "</body></html>",
        ]
    )
    out_html = Path(out_html)
    with atomic_output(out_html) as temporary:
        temporary.write_text(document, encoding="utf-8")
    log.info("report written: %s", out_html)
    return out_html


def _comparison_section(summary_csv: Path) -> str:
    """Models side by side (baselines and ablation variants): mean ± sd per metric, pooled C with its CI."""
    import pandas as pd

    if not summary_csv.exists():
        return ""
    table = pd.read_csv(summary_csv)
    metrics = list(dict.fromkeys(table["metric"]))
    rows = []
    for (cohort, model), run in table.groupby(["cohort", "model"], sort=False):
        by_metric = run.set_index("metric")
        cells = []
        for metric in metrics:
            if metric not in by_metric.index:
                cells.append(None)
                continue
            entry = by_metric.loc[metric]
            if metric == "c_index_pooled":
                cells.append(f"{_format(entry['mean'])} [{_format(entry['ci_low'])}, {_format(entry['ci_high'])}]")
            else:
                cells.append(f"{_format(entry['mean'])} ± {_format(entry['sd'])}")
        rows.append([_text(str(cohort)), _text(str(model)), *cells])
    note = (
        '<p class="note">mean ± sd over folds (held-out, final epoch); pooled C: out-of-fold, '
        "within-fold ranks, bootstrap 95% CI.</p>"
    )
    return "<h2>Models side by side</h2>\n" + _table(["cohort", "model", *metrics], rows, escaped=True) + note


def _summary_section(summary_csv: Path) -> str:
    import pandas as pd

    if not summary_csv.exists():
        return f'<h2>Summary</h2><p class="note">{_text(str(summary_csv))} not found.</p>'
    table = pd.read_csv(summary_csv)
    rows = table.astype(object).where(table.notna(), None).values.tolist()
    return "<h2>Summary</h2>\n" + _table(list(table.columns), rows)


def _run_section(run_dir: Path) -> str:
    import pandas as pd

    summary = json.loads((run_dir / "summary.json").read_text())
    name = f"{summary.get('cohort', run_dir.parent.name)} · {summary.get('model', run_dir.name)}"
    parts = [f"<h2>{_text(name)}</h2>"]
    pooled = summary.get("pooled_c_index", {})
    model_type = summary.get("model_type")
    parts.append(
        (f"<p>Model type: {_text(str(model_type))}.</p>" if model_type else "")
        + "<p>Pooled out-of-fold C-index (within-fold ranks): "
        f"{_format(pooled.get('value'))} (95% CI {_format(pooled.get('ci_low'))}–{_format(pooled.get('ci_high'))},"
        f" {_format(pooled.get('n_resamples_used'))} bootstrap resamples)</p>"
    )
    for scheme, groups in summary.get("risk_groups", {}).items():
        log_rank = groups.get("log_rank", {})
        counts = ", ".join(f"{name} {count}" for name, count in groups.get("n", {}).items())
        png = run_dir / groups.get("figures", {}).get("png", "")
        parts.append(
            f"<h3>Risk groups: {_text(scheme)}</h3><p>{_text(counts)}; log-rank p "
            f"{_format(log_rank.get('p_value'))}"
            + (f" ({_text(str(log_rank['reason']))})" if log_rank.get("reason") else "")
            + "</p>"
        )
        if png.is_file():
            parts.append(_image(png.read_bytes(), f"Kaplan–Meier curves ({scheme}): {name}"))
    parts.append(_fold_metrics_table(summary))
    curves = {
        int(path.parent.name.removeprefix("fold_")): pd.read_csv(path)
        for path in sorted(run_dir.glob("fold_*/curve.csv"))
    }
    curves = {fold: curve for fold, curve in curves.items() if not curve.empty}  # CoxNet has no epochs
    if curves:
        parts.append("<h3>Training curves</h3>")
        parts.append(_image(training_curves_png(curves), f"training curves: {name}"))
    return "\n".join(parts)


def _fold_metrics_table(summary: dict[str, Any]) -> str:
    metrics = summary.get("metrics", {})
    n_folds = max((len(entry["per_fold"]) for entry in metrics.values()), default=0)
    header = ["metric", "mean", "sd", "n_folds", *(f"fold {k}" for k in range(n_folds))]
    rows = [[name, entry["mean"], entry["sd"], entry["n_folds"], *entry["per_fold"]] for name, entry in metrics.items()]
    reasons = [
        f"<li>{_text(name)}, {_text(fold)}: {_text(str(reason))}</li>"
        for name, entry in metrics.items()
        for fold, reason in entry.get("reasons", {}).items()
    ]
    notes = f'<ul class="note">{"".join(reasons)}</ul>' if reasons else ""
    return "<h3>Per-fold held-out metrics (final epoch)</h3>\n" + _table(header, rows) + notes


def _qc_section(tiles_dir: Path) -> str:
    parts = ["<h2>Tiling QC</h2>"]
    cohorts = sorted(path for path in tiles_dir.glob("*") if path.is_dir())
    for cohort in cohorts:
        images = sorted(cohort.glob("*.png"))[:MAX_THUMBNAILS]
        if images:
            parts.append(f"<h3>{_text(cohort.name)}</h3>")
            parts.extend(_image(thumbnail_png(image), image.stem, caption=image.stem) for image in images)
    if len(parts) == 1:
        parts.append(f'<p class="note">no QC images under {_text(str(tiles_dir))}.</p>')
    return "\n".join(parts)


def _config_section(config: dict[str, Any]) -> str:
    import yaml

    dumped = yaml.safe_dump(config, sort_keys=False, default_flow_style=False) if config else "(none given)\n"
    return f"<h2>Configuration</h2>\n<pre>{_text(dumped)}</pre>"


def _versions_section() -> str:
    rows = [[package, version] for package, version in package_versions().items()]
    return "<h2>Package versions</h2>\n" + _table(["package", "version"], rows)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, escaped: bool = False) -> str:
    """An HTML table; with escaped=True, string cells are already escaped HTML text."""
    head = "".join(f"<th>{_text(str(cell))}</th>" for cell in header)
    body = "\n".join("<tr>" + "".join(_cell(cell, escaped=escaped) for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _cell(value: Any, *, escaped: bool = False) -> str:
    css = ' class="text"' if isinstance(value, str) else ""
    return f"<td{css}>{value if escaped and isinstance(value, str) else _format(value)}</td>"


def _format(value: Any) -> str:
    """Escaped display text: floats to 4 significant digits, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return _text(f"{value:.4g}")
    return _text(str(value))


def _image(png: bytes, alt: str, *, caption: str | None = None) -> str:
    tag = f'<img src="{png_data_uri(png)}" alt="{_text(alt)}">'
    if caption is None:
        return f"<figure>{tag}</figure>"
    return f"<figure>{tag}<figcaption>{_text(caption)}</figcaption></figure>"


def _text(value: str) -> str:
    return html.escape(value, quote=True)
