"""Epoch schedules and evaluation settings: early stopping on an inner split only, Uno's tau, the shared grid."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train import FAST, MeanPoolModel, planted_bags, planted_fold, write_cohort

from memamba.errors import InputError
from memamba.evaluate.settings import EvaluationSettings
from memamba.train.loop import run_fold, train_fold
from memamba.train.params import TrainParams
from memamba.train.schedule import inner_split

EARLY = {**FAST, "epochs": 6, "early_stopping": True, "patience": 2, "lr": 0.05}


def train(fold: object, out_dir: Path, **overrides: object) -> dict:
    params = TrainParams.from_dict({**EARLY, **overrides})
    return run_fold(fold, MeanPoolModel, fold=0, model_name="meanpool", model_params={}, params=params,
                    out_dir=out_dir)


def test_early_stopping_records_the_chosen_epoch_count_and_trains_for_exactly_that(tmp_path: Path) -> None:
    record = train(planted_fold(), tmp_path)
    selection = record["early_stopping"]
    assert 1 <= selection["selected_epochs"] <= EARLY["epochs"]
    assert record["epochs"] == selection["selected_epochs"]
    assert len(pd.read_csv(tmp_path / "curve.csv")) == selection["selected_epochs"]
    assert selection["n_inner_train"] + selection["n_inner_val"] == 120


def test_early_stopping_does_not_depend_on_the_held_out_patients(tmp_path: Path) -> None:
    fold = planted_fold()
    shuffled = copy.copy(fold)
    shuffled.val = planted_bags(60, 99, "TCGA-OT")
    first = train(fold, tmp_path / "a")["early_stopping"]
    second = train(shuffled, tmp_path / "b")["early_stopping"]
    assert first == second


def test_early_stopping_is_off_by_default_and_the_fixed_schedule_runs_every_epoch(tmp_path: Path) -> None:
    record = run_fold(planted_fold(), MeanPoolModel, fold=0, model_name="meanpool", model_params={},
                      params=TrainParams.from_dict({**FAST, "epochs": 3}), out_dir=tmp_path)
    assert "early_stopping" not in record
    assert record["epochs"] == 3


def test_inner_split_is_disjoint_seeded_and_stratified_by_event() -> None:
    bags = planted_bags(100, 3, "TCGA-IS")
    inner_train, inner_val = inner_split(bags, 0.2, seed=5)
    assert not set(inner_train) & set(inner_val)
    assert sorted(inner_train + inner_val) == list(range(100))
    assert (inner_train, inner_val) == inner_split(bags, 0.2, seed=5)
    events = sum(1 for bag in bags if bag.censorship == 0)
    assert sum(1 for index in inner_val if bags[index].censorship == 0) == round(0.2 * events)


def test_inner_split_without_events_is_an_input_error() -> None:
    bags = planted_bags(20, 3, "TCGA-NE")
    for bag in bags:
        bag.censorship = 1
    with pytest.raises(InputError, match="no event"):
        inner_split(bags, 0.2, seed=0)


def test_configured_uno_tau_is_used_and_recorded(tmp_path: Path) -> None:
    write_cohort(tmp_path / "cohort", planted_bags(60, 4, "TCGA-TA"), n_val=20)
    record = train_fold(tmp_path / "cohort", None, 0, "snn", {"d_model": 8}, {"epochs": 1, "grad_accum": 8},
                        tmp_path / "fold_0", evaluation={"uno_tau": 12.5})
    assert record["evaluation"]["uno_tau_months"] == 12.5


def test_shared_time_grid_comes_from_every_patient_of_the_cohort(tmp_path: Path) -> None:
    bags = planted_bags(60, 4, "TCGA-GR")
    write_cohort(tmp_path / "cohort", bags, n_val=20)
    record = train_fold(tmp_path / "cohort", None, 0, "snn", {"d_model": 8}, {"epochs": 1, "grad_accum": 8},
                        tmp_path / "fold_0", evaluation={"time_grid_quantiles": [0.25, 0.5, 0.75]})
    everyone = np.quantile([bag.survival_months for bag in bags], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(record["evaluation"]["shared_time_grid_months"], everyone)
    assert set(record["evaluation"]["time_grid_months"]) <= set(record["evaluation"]["shared_time_grid_months"])


def test_unknown_evaluation_setting_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown key"):
        EvaluationSettings.from_dict({"tau": 10})
