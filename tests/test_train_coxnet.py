"""CoxNet (scikit-survival) as a model type of the fold harness: same outputs, alpha chosen on training patients."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_train import planted_bags, write_cohort

from memamba.errors import InputError
from memamba.train.loop import train_fold

COXNET = {"n_alphas": 8, "inner_folds": 3}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("coxnet") / "cohort"
    write_cohort(folder, planted_bags(120, 21, "TCGA-CX"), n_val=40)
    return folder


def test_coxnet_writes_the_harness_outputs_and_learns_a_planted_signal(cohort: Path, tmp_path: Path) -> None:
    record = train_fold(cohort, None, 0, "coxnet", COXNET, {}, tmp_path)
    assert record["metrics"]["c_index"]["value"] > 0.7
    assert record["epochs"] is None and record["coxnet"]["n_features"] == 3
    risks = pd.read_csv(tmp_path / "risks.csv")
    assert list(risks.columns[-4:]) == ["surv_1", "surv_2", "surv_3", "surv_4"]
    assert (risks[["surv_1", "surv_2", "surv_3", "surv_4"]].diff(axis=1).iloc[:, 1:] <= 1e-12).all().all()
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["ibs"]["value"] is not None
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "curve.csv").is_file()


def test_coxnet_alpha_is_chosen_without_the_held_out_patients(cohort: Path, tmp_path: Path) -> None:
    first = train_fold(cohort, None, 0, "coxnet", COXNET, {}, tmp_path / "a")["coxnet"]
    patients = pd.read_parquet(cohort / "patients.parquet")
    held_out = patients["case_id"].isin(pd.read_csv(cohort / "splits/splits_0.csv")["val"])
    patients.loc[held_out, "survival_months"] = patients.loc[held_out, "survival_months"][::-1].to_numpy()
    changed = tmp_path / "cohort"
    changed.mkdir()
    for name in ("omics.parquet", "groups.json"):
        (changed / name).write_bytes((cohort / name).read_bytes())
    (changed / "splits").mkdir()
    (changed / "splits/splits_0.csv").write_bytes((cohort / "splits/splits_0.csv").read_bytes())
    patients.to_parquet(changed / "patients.parquet")
    second = train_fold(changed, None, 0, "coxnet", COXNET, {}, tmp_path / "b")["coxnet"]
    assert (first["alpha"], first["inner_cv_c_index"]) == (second["alpha"], second["inner_cv_c_index"])


def test_coxnet_fixed_alpha_skips_the_inner_search(cohort: Path, tmp_path: Path) -> None:
    record = train_fold(cohort, None, 0, "coxnet", {"alpha": 0.05}, {}, tmp_path)
    assert record["coxnet"]["alpha"] == 0.05 and "alphas" not in record["coxnet"]


def test_unknown_coxnet_parameter_is_an_input_error(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="l2_ratio"):
        train_fold(cohort, None, 0, "coxnet", {"l2_ratio": 0.5}, {}, tmp_path)
