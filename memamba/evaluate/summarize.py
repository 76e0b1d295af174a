"""Cross-fold summaries: one run's summary.json and KM figure, and the long summary.csv over runs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memamba import __version__
from memamba.errors import InputError
from memamba.evaluate.km_plot import plot_risk_groups
from memamba.evaluate.pooled import (
    RISK_GROUP_SCHEMES,
    assign_risk_groups,
    log_rank,
    pooled_c_index,
    rank_normalise,
    risk_group_cutoffs,
)
from memamba.io import atomic_output

log = logging.getLogger(__name__)

POOLED_METRIC = "c_index_pooled"


def km_stem(scheme: str) -> str:
    """File stem of a scheme's KM figure: km (median split) or km_{scheme}."""
    return "km" if scheme == "median" else f"km_{scheme}"


def evaluate_model(
    run_dir: str | os.PathLike[str],
    n_folds: int,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    risk_group_schemes: Sequence[str] = ("median", "tertiles"),
) -> dict[str, Any]:
    """Summarise run_dir/fold_{0…n_folds-1}/{metrics.json, risks.csv}; write summary.json and KM figures.

    Per metric: mean and sd (ddof=1) over the folds where it exists, their count, and every fold's value.
    Pooled: Harrell's C of all out-of-fold patients on within-fold rank-normalised risks, with a seeded
    percentile bootstrap 95% CI (`bootstrap` resamples). Risk groups, per scheme ("median", "tertiles"):
    split of the same risks, its cut-offs (normalised scale, reused by `memamba predict`), Kaplan–Meier
    curves (`km_stem(scheme)`.png/.svg) and log-rank test. run_dir is runs/{cohort}/{model}.
    Returns the summary.
    """
    import pandas as pd

    run_dir = Path(run_dir)
    unknown = sorted(set(risk_group_schemes) - set(RISK_GROUP_SCHEMES))
    if unknown or not risk_group_schemes:
        raise InputError(f"risk group schemes {unknown or '[]'}: choose one or more of {list(RISK_GROUP_SCHEMES)}")
    if n_folds < 1:
        raise InputError(f"{run_dir}: n_folds must be at least 1, got {n_folds}")
    records = [_read_json(run_dir / f"fold_{k}" / "metrics.json") for k in range(n_folds)]
    risks = pd.concat(
        [_read_risks(run_dir / f"fold_{k}" / "risks.csv").assign(fold=k) for k in range(n_folds)],
        ignore_index=True,
    )
    months = risks["survival_months"].to_numpy(dtype=float)
    censorship = risks["censorship"].to_numpy(dtype=int)
    normalised = rank_normalise(risks)

    cohort, model = run_dir.parent.name, run_dir.name
    groups_summary = {}
    for scheme in dict.fromkeys(risk_group_schemes):
        cutoffs = risk_group_cutoffs(normalised, scheme) if len(risks) else []
        groups = assign_risk_groups(normalised, cutoffs, scheme) if len(risks) else np.empty(0, dtype=str)
        logrank = log_rank(months, censorship, groups)
        stem = km_stem(scheme)
        groups_summary[scheme] = {
            "method": f"{scheme} split of within-fold rank-normalised out-of-fold risks",
            "cutoffs_normalised": cutoffs,
            "n": {name: int((groups == name).sum()) for name in RISK_GROUP_SCHEMES[scheme]},
            "log_rank": logrank,
            "figures": {"png": f"{stem}.png", "svg": f"{stem}.svg"},
        }
        plot_risk_groups(
            months,
            censorship,
            groups,
            [run_dir / f"{stem}.png", run_dir / f"{stem}.svg"],
            title=f"{cohort} · {model}: out-of-fold risk groups ({scheme})",
            p_value=logrank["p_value"],
        )
    summary = {
        "cohort": cohort,
        "model": model,
        "model_type": records[0].get("model", model),
        "n_folds": n_folds,
        "epochs_per_fold": [record.get("epochs") for record in records],
        "metrics": _aggregate([record["metrics"] for record in records]),
        "pooled_c_index": pooled_c_index(months, censorship, normalised, bootstrap=bootstrap, seed=seed),
        "risk_groups": groups_summary,
        "memamba_version": __version__,
    }
    with atomic_output(run_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    log.info("%s/%s: C-index %s ± %s over %s folds", cohort, model, summary["metrics"]["c_index"]["mean"],
             summary["metrics"]["c_index"]["sd"], summary["metrics"]["c_index"]["n_folds"])
    return summary


def write_summary_table(summary_jsons: Sequence[str | os.PathLike[str]], out_csv: str | os.PathLike[str]) -> Path:
    """Long table over runs: cohort, model, metric, mean, sd, n_folds, fold_0 … fold_{k-1}, ci_low, ci_high.

    One row per run × fold metric, plus a `c_index_pooled` row per run (mean = pooled value, with its
    bootstrap CI; fold columns empty). cohort and model come from summary.json, else from the path
    runs/{cohort}/{model}/summary.json. Missing values are empty cells.
    """
    import pandas as pd

    rows = []
    for path in map(Path, summary_jsons):
        summary = _read_json(path)
        cohort = summary.get("cohort") or path.parent.parent.name
        model = summary.get("model") or path.parent.name
        for metric, entry in summary["metrics"].items():
            folds = {f"fold_{k}": value for k, value in enumerate(entry["per_fold"])}
            rows.append({"cohort": cohort, "model": model, "metric": metric, "mean": entry["mean"],
                         "sd": entry["sd"], "n_folds": entry["n_folds"], **folds})
        pooled = summary["pooled_c_index"]
        rows.append({"cohort": cohort, "model": model, "metric": POOLED_METRIC, "mean": pooled["value"],
                     "sd": None, "n_folds": summary["n_folds"], "ci_low": pooled["ci_low"],
                     "ci_high": pooled["ci_high"]})
    table = pd.DataFrame(rows)
    fold_columns = sorted((column for column in table.columns if column.startswith("fold_")),
                          key=lambda column: int(column.removeprefix("fold_")))
    columns = ["cohort", "model", "metric", "mean", "sd", "n_folds", *fold_columns, "ci_low", "ci_high"]
    table = table.reindex(columns=columns)
    table["n_folds"] = table["n_folds"].astype("Int64")
    out_csv = Path(out_csv)
    with atomic_output(out_csv) as temporary:
        table.to_csv(temporary, index=False)
    return out_csv


def _aggregate(fold_metrics: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per metric: mean, sd (ddof=1; None under two folds), n_folds used, per-fold values, per-fold reasons."""
    names = list(dict.fromkeys(name for metrics in fold_metrics for name in metrics))
    aggregated = {}
    for name in names:
        entries = [metrics.get(name, {"value": None, "reason": "not recorded"}) for metrics in fold_metrics]
        per_fold = [entry["value"] for entry in entries]
        used = np.array([value for value in per_fold if value is not None], dtype=float)
        aggregated[name] = {
            "mean": float(used.mean()) if used.size else None,
            "sd": float(used.std(ddof=1)) if used.size >= 2 else None,
            "n_folds": int(used.size),
            "per_fold": per_fold,
            "reasons": {f"fold_{k}": entry["reason"] for k, entry in enumerate(entries) if entry["value"] is None},
        }
    return aggregated


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not found; run `memamba train` (or `memamba evaluate`) for it first") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON (line {error.lineno}); rerun the step that wrote it") from None


def _read_risks(path: Path) -> Any:
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: not found; run `memamba train` for this fold first")
    risks = pd.read_csv(path, dtype={"case_id": str})
    missing = {"case_id", "risk", "survival_months", "censorship"} - set(risks.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}; rerun `memamba train` for this fold")
    return risks
