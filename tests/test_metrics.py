"""Survival loss and held-out metrics: reference values, hand computations and the never-zero rule."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from memamba.errors import InputError
from memamba.evaluate.metrics import evaluation_times, fold_metrics, harrell_c, survival_at, uno_c
from memamba.evaluate.pooled import assign_risk_groups
from memamba.evaluate.summarize import evaluate_model, write_summary_table
from memamba.train.loss import risk_from_logits, survival_curve, survival_nll

MCAT_RESULTS = Path(__file__).parent / "data/reference_results/mcat_iccv/MCATsm_nll_surv_a0.0_5foldcv_gc32_concat"


def _mcat_fold(cohort: str, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open(MCAT_RESULTS / f"tcga_{cohort}" / f"split_latest_val_{fold}_results.pkl", "rb") as handle:
        patients = pickle.load(handle)
    rows = list(patients.values())
    months = np.array([row["survival"] for row in rows], dtype=float)
    censorship = np.array([row["censorship"] for row in rows], dtype=float)
    risk = np.array([row["risk"] for row in rows], dtype=float)
    return months, censorship, risk


@pytest.mark.parametrize(("cohort", "published"), [("blca", 0.6243), ("brca", 0.5801)])
def test_harrell_c_reproduces_mcat_published_mean_c_index(cohort: str, published: float) -> None:
    values = [harrell_c(*_mcat_fold(cohort, fold))["value"] for fold in range(5)]
    assert round(float(np.mean(values)), 4) == published


def test_harrell_c_without_events_is_none_with_reason_not_zero() -> None:
    result = harrell_c([5.0, 10.0, 20.0], [1, 1, 1], [0.3, 0.2, 0.1])
    assert result["value"] is None
    assert "no events" in result["reason"]


def test_fold_without_events_reports_every_concordance_as_none() -> None:
    curves = np.tile([0.9, 0.7, 0.5, 0.3], (4, 1))
    metrics = fold_metrics(
        [5.0, 10.0, 15.0, 20.0], [1, 1, 1, 1], [0.4, 0.3, 0.2, 0.1], curves, [0, 8, 12, 18, 40],
        [2.0, 6.0, 11.0, 14.0, 22.0, 30.0], [0, 0, 1, 0, 1, 0],
    )
    for name in ("c_index", "c_index_uno", "mean_auc"):
        assert metrics[name]["value"] is None, name
        assert metrics[name]["reason"], name


def test_uno_c_is_close_to_harrell_c_without_censoring() -> None:
    rng = np.random.default_rng(0)
    train_months = rng.exponential(20.0, 200)
    months = rng.uniform(1.0, 0.9 * train_months.max(), 80)
    risk = -months + rng.normal(0.0, 10.0, 80)
    harrell = harrell_c(months, np.zeros(80), risk)["value"]
    uno = uno_c(months, np.zeros(80), risk, train_months, np.zeros(200), tau=train_months.max())["value"]
    assert uno == pytest.approx(harrell, abs=0.01)


def test_integrated_brier_score_is_lower_for_perfect_knowledge_than_uninformative_curve() -> None:
    rng = np.random.default_rng(1)
    edges = [0.0, 10.0, 20.0, 30.0, 1000.0]
    months = rng.uniform(1.0, 39.0, 60)
    censorship = np.zeros(60)
    bins = np.searchsorted(edges[1:-1], months, side="right")
    perfect = (np.arange(4)[None, :] < bins[:, None]).astype(float)
    uninformative = np.tile([0.75, 0.5, 0.25, 0.0], (60, 1))
    train_months, train_censorship = rng.uniform(0.5, 40.0, 100), rng.integers(0, 2, 100)

    def ibs(curves: np.ndarray) -> float:
        return fold_metrics(months, censorship, -curves.sum(1), curves, edges, train_months, train_censorship)[
            "ibs"
        ]["value"]

    assert ibs(perfect) < ibs(uninformative)


def test_survival_at_is_a_right_continuous_step_over_bin_edges() -> None:
    curves = np.array([[0.9, 0.6, 0.3, 0.1]])
    probabilities = survival_at(curves, [0.0, 10.0, 20.0, 30.0, 99.0], [5.0, 10.0, 19.9, 25.0, 50.0])
    np.testing.assert_allclose(probabilities, [[1.0, 0.9, 0.9, 0.6, 0.3]])


def test_time_grid_stays_inside_both_follow_up_ranges() -> None:
    grid = evaluation_times(np.linspace(1.0, 100.0, 50), np.linspace(10.0, 60.0, 50))
    assert grid.size > 0
    assert grid.min() >= 10.0
    assert grid.max() < 60.0


def test_empty_time_grid_makes_ibs_none_with_reason() -> None:
    metrics = fold_metrics(
        [50.0, 60.0, 70.0], [0, 0, 1], [0.3, 0.2, 0.1], np.full((3, 4), 0.5), [0, 1, 2, 3, 100],
        [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 1],
    )
    assert metrics["ibs"]["value"] is None
    assert "time grid" in metrics["ibs"]["reason"]


def test_mean_auc_skips_grid_times_before_the_first_held_out_event() -> None:
    months = np.r_[np.linspace(1.0, 19.0, 10), np.linspace(21.0, 39.0, 10)]
    censorship = np.r_[np.ones(10), np.zeros(10)]  # early patients censored, late ones with events
    train_months = np.linspace(0.5, 50.0, 40)
    metrics = fold_metrics(months, censorship, -months, np.full((20, 4), 0.5), [0, 10, 20, 30, np.inf],
                           train_months, np.arange(40) % 2)
    assert metrics["mean_auc"]["value"] == pytest.approx(1.0)


def test_nll_matches_hand_computation_for_two_patients() -> None:
    logits = torch.tensor([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]])
    # patient 1: event in bin 1, h = (1/2, 3/4, 1/2): -log S_0 - log h_1 = log 2 + log 4/3
    # patient 2: censored in bin 1: -log S_1 = -log(1/2 · 1/2) = log 4
    loss = survival_nll(logits, torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx((math.log(8 / 3) + math.log(4)) / 2, rel=1e-6)


def test_nll_alpha_upweights_the_uncensored_term() -> None:
    logits = torch.tensor([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]])
    loss = survival_nll(logits, torch.tensor([1, 1]), torch.tensor([0, 1]), alpha=0.4)
    assert loss.item() == pytest.approx((math.log(8 / 3) + 0.6 * math.log(4)) / 2, rel=1e-6)


def test_nll_gradient_raises_event_bin_hazard_and_lowers_earlier_and_censored_hazards() -> None:
    logits = torch.zeros(2, 4, requires_grad=True)
    survival_nll(logits, torch.tensor([2, 2]), torch.tensor([0, 1])).backward()
    event_grad, censored_grad = logits.grad
    assert event_grad[2] < 0  # descent raises the hazard of the event's bin
    assert (event_grad[:2] > 0).all()  # and lowers the hazards of the bins it survived
    assert (censored_grad[:3] > 0).all()  # a censored patient survived bins 0 … 2
    assert censored_grad[3] == 0


def test_risk_orders_patients_by_hazard_and_curve_is_cumulative_product() -> None:
    logits = torch.tensor([[-2.0, -2.0], [2.0, 2.0]])
    hazards = torch.sigmoid(logits)
    torch.testing.assert_close(survival_curve(logits), torch.cumprod(1 - hazards, dim=1))
    low, high = risk_from_logits(logits)
    assert high > low


def write_fold(run_dir: Path, fold: int, months: np.ndarray, risk: np.ndarray, c_index: float | None) -> None:
    """Fake fold outputs: risks.csv (every patient an event) and a metrics.json with one metric."""
    fold_dir = run_dir / f"fold_{fold}"
    fold_dir.mkdir(parents=True)
    pd.DataFrame(
        {"case_id": [f"TCGA-{fold}{i:02d}" for i in range(len(months))], "risk": risk,
         "survival_months": months, "censorship": 0, "time_bin": 0}
    ).to_csv(fold_dir / "risks.csv", index=False)
    reason = None if c_index is not None else "no events among the held-out patients"
    metrics = {"c_index": {"value": c_index, "reason": reason}}
    (fold_dir / "metrics.json").write_text(json.dumps({"epochs": 3, "metrics": metrics}))


def fake_run(root: Path, c_indices: list[float | None]) -> Path:
    run_dir = root / "runs" / "tcga_demo" / "snn"
    months = np.linspace(1.0, 40.0, 12)
    for fold, c_index in enumerate(c_indices):
        write_fold(run_dir, fold, months + fold, -months + np.sin(months), c_index)
    return run_dir


def test_summary_mean_sd_and_n_folds_use_only_folds_where_the_metric_exists(tmp_path: Path) -> None:
    summary = evaluate_model(fake_run(tmp_path, [0.6, None, 0.7, 0.8]), 4, bootstrap=20)
    c_index = summary["metrics"]["c_index"]
    assert c_index["n_folds"] == 3
    assert c_index["mean"] == pytest.approx(0.7)
    assert c_index["sd"] == pytest.approx(0.1)
    assert c_index["per_fold"] == [0.6, None, 0.7, 0.8]
    assert "fold_1" in c_index["reasons"]


def test_pooled_c_index_ranks_risks_within_each_fold(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "tcga_demo" / "snn"
    months = np.linspace(1.0, 40.0, 20)
    write_fold(run_dir, 0, months, -months, 1.0)
    write_fold(run_dir, 1, months + 0.5, 100.0 - months, 1.0)  # same ordering, a shifted risk scale
    summary = evaluate_model(run_dir, 2, bootstrap=0)
    raw = pd.concat([pd.read_csv(run_dir / f"fold_{k}/risks.csv") for k in range(2)])
    assert harrell_c(raw["survival_months"], raw["censorship"], raw["risk"])["value"] < 0.8
    assert summary["pooled_c_index"]["value"] > 0.95


def test_pooled_c_index_bootstrap_ci_is_seeded_and_brackets_the_estimate(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, [0.6, 0.7, 0.8])
    first = evaluate_model(run_dir, 3, bootstrap=50, seed=3)["pooled_c_index"]
    second = evaluate_model(run_dir, 3, bootstrap=50, seed=3)["pooled_c_index"]
    assert (first["ci_low"], first["ci_high"]) == (second["ci_low"], second["ci_high"])
    assert first["ci_low"] <= first["value"] <= first["ci_high"]


def test_evaluate_writes_km_figures_and_a_log_rank_p_value(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, [0.6, 0.7])
    summary = evaluate_model(run_dir, 2, bootstrap=10)
    assert 0.0 < summary["risk_groups"]["median"]["log_rank"]["p_value"] < 1.0
    assert (run_dir / "km.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (run_dir / "km.svg").read_bytes()
    assert json.loads((run_dir / "summary.json").read_text())["n_folds"] == 2


def test_tertile_split_has_three_groups_its_own_km_figure_and_stored_cutoffs(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, [0.6, 0.7, 0.8])
    tertiles = evaluate_model(run_dir, 3, bootstrap=0)["risk_groups"]["tertiles"]
    assert sorted(tertiles["n"].values()) == [12, 12, 12]
    assert len(tertiles["cutoffs_normalised"]) == 2
    assert tertiles["log_rank"]["p_value"] is not None
    assert (run_dir / "km_tertiles.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (run_dir / "km_tertiles.svg").read_bytes()


def test_risk_groups_at_stored_cutoffs_are_low_intermediate_high() -> None:
    groups = assign_risk_groups(np.array([0.1, 0.34, 0.5, 0.9]), [1 / 3, 2 / 3], "tertiles")
    assert groups.tolist() == ["low", "intermediate", "intermediate", "high"]


def test_unknown_risk_group_scheme_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="quartiles"):
        evaluate_model(fake_run(tmp_path, [0.6, 0.7]), 2, risk_group_schemes=["quartiles"])


def test_missing_fold_output_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, [0.6, 0.7])
    with pytest.raises(InputError, match=r"fold_2/metrics\.json"):
        evaluate_model(run_dir, 3)


def test_summary_table_has_one_row_per_metric_with_fold_columns(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, [0.6, None, 0.8])
    evaluate_model(run_dir, 3, bootstrap=10)
    table = pd.read_csv(write_summary_table([run_dir / "summary.json"], tmp_path / "summary.csv"))
    assert list(table.columns[:9]) == [
        "cohort", "model", "metric", "mean", "sd", "n_folds", "fold_0", "fold_1", "fold_2",
    ]
    row = table[table["metric"] == "c_index"].iloc[0]
    assert (row["cohort"], row["model"], row["n_folds"]) == ("tcga_demo", "snn", 2)
    assert np.isnan(row["fold_1"])
    assert "c_index_pooled" in set(table["metric"])
