"""`memamba predict`: a trained fold ensemble applied to new patients with each fold's own preparation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train import planted_bags, write_cohort

from memamba.errors import InputError
from memamba.evaluate.summarize import evaluate_model
from memamba.train.loop import train_fold
from memamba.train.predict import predict_patients

TRAIN = {"epochs": 2, "grad_accum": 8, "lr": 0.005}


def two_fold_cohort(folder: Path) -> Path:
    """60 genomics-only patients; fold 0 holds out the first 20, fold 1 the next 20."""
    write_cohort(folder, planted_bags(60, 11, "TCGA-PR"), n_val=20)
    case_ids = pd.read_parquet(folder / "patients.parquet")["case_id"].tolist()
    split = pd.DataFrame({"train": pd.Series(case_ids[:20] + case_ids[40:]), "val": pd.Series(case_ids[20:40])})
    split.to_csv(folder / "splits" / "splits_1.csv")
    return folder


def subset_cohort(source: Path, target: Path, case_ids: list[str]) -> Path:
    """A cohort folder holding only `case_ids` (their raw omics, unscaled) of `source`."""
    target.mkdir(parents=True)
    patients = pd.read_parquet(source / "patients.parquet")
    patients[patients["case_id"].isin(case_ids)].to_parquet(target / "patients.parquet")
    omics = pd.read_parquet(source / "omics.parquet")
    omics[omics["case_id"].isin(case_ids)].to_parquet(target / "omics.parquet")
    (target / "groups.json").write_text((source / "groups.json").read_text())
    return target


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predict")
    cohort = two_fold_cohort(root / "cohort")
    run_dir = root / "runs" / "cohort" / "snn"
    for fold in range(2):
        train_fold(cohort, None, fold, "snn", {"d_model": 8}, TRAIN, run_dir / f"fold_{fold}")
    evaluate_model(run_dir, 2, bootstrap=0)
    return cohort, run_dir


def test_one_fold_ensemble_reproduces_that_folds_held_out_risks(trained: tuple[Path, Path], tmp_path: Path) -> None:
    cohort, run_dir = trained
    single = tmp_path / "runs" / "cohort" / "snn"
    (single / "fold_0").mkdir(parents=True)
    for name in ("checkpoint.pt", "risks.csv", "metrics.json"):
        (single / "fold_0" / name).write_bytes((run_dir / "fold_0" / name).read_bytes())
    evaluate_model(single, 1, bootstrap=0)
    predicted = predict_patients(single, cohort, None, tmp_path / "predictions.csv").set_index("case_id")
    held_out = pd.read_csv(run_dir / "fold_0/risks.csv").set_index("case_id")
    np.testing.assert_allclose(predicted.loc[held_out.index, "risk"], held_out["risk"], rtol=1e-6)
    ranks = (held_out["risk"].rank() - 0.5) / len(held_out)
    np.testing.assert_allclose(predicted.loc[held_out.index, "risk_percentile"], ranks)


def test_coxnet_ensemble_reproduces_its_held_out_risks(trained: tuple[Path, Path], tmp_path: Path) -> None:
    cohort, _ = trained
    run_dir = tmp_path / "runs" / "cohort" / "coxnet"
    train_fold(cohort, None, 0, "coxnet", {"n_alphas": 8}, {}, run_dir / "fold_0")
    evaluate_model(run_dir, 1, bootstrap=0)
    predicted = predict_patients(run_dir, cohort, None, tmp_path / "p.csv").set_index("case_id")
    held_out = pd.read_csv(run_dir / "fold_0/risks.csv").set_index("case_id")
    np.testing.assert_allclose(predicted.loc[held_out.index, "risk"], held_out["risk"], rtol=1e-9)


def test_a_patient_alone_is_predicted_as_in_a_batch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    cohort, run_dir = trained
    batch = predict_patients(run_dir, cohort, None, tmp_path / "batch.csv").set_index("case_id")
    case = batch.index[7]
    alone = predict_patients(run_dir, subset_cohort(cohort, tmp_path / "one", [case]), None, tmp_path / "one.csv")
    assert alone["risk"].iloc[0] == pytest.approx(batch.loc[case, "risk"], rel=1e-6)


def test_ensemble_output_has_groups_from_stored_cutoffs_and_monotone_survival(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    cohort, run_dir = trained
    table = predict_patients(run_dir, cohort, None, tmp_path / "p.csv", times=[5.0, 10.0, 20.0])
    assert len(table) == 60 and (table["n_folds"] == 2).all()
    assert set(table["risk_group_median"]) == {"low", "high"}
    assert set(table["risk_group_tertiles"]) <= {"low", "intermediate", "high"}
    survival = table[["surv_5m", "surv_10m", "surv_20m"]].to_numpy()
    assert (np.diff(survival, axis=1) <= 1e-12).all() and ((survival > 0) & (survival <= 1)).all()
    high = table["risk_group_median"] == "high"
    assert table.loc[high, "risk_percentile"].min() > table.loc[~high, "risk_percentile"].max()


def test_new_patients_missing_a_trained_omic_column_are_an_input_error(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    cohort, run_dir = trained
    other = subset_cohort(cohort, tmp_path / "other", pd.read_parquet(cohort / "patients.parquet")["case_id"][:5])
    pd.read_parquet(other / "omics.parquet").drop(columns=["MYC"]).to_parquet(other / "omics.parquet")
    (other / "groups.json").write_text('{"groups": {"genes": ["TP53", "EGFR"]}, "missing_genes": {}}')
    with pytest.raises(InputError, match="MYC"):
        predict_patients(run_dir, other, None, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def write_slide_features(folder: Path, bags: list) -> Path:
    """One features h5 per patient ({case}-01Z-00-DX1.h5, the slide id write_cohort gives it)."""
    import h5py

    folder.mkdir(parents=True)
    for bag in bags:
        with h5py.File(folder / f"{bag.case_id}-01Z-00-DX1.h5", "w") as handle:
            handle["features"] = bag.features.numpy().astype(np.float16)
            handle["coords"] = bag.coords.numpy()
            handle.attrs["status"] = "ok"
    return folder


def test_slide_model_predicts_patients_with_features_and_skips_one_without(tmp_path: Path) -> None:
    bags = planted_bags(40, 5, "TCGA-SL")
    write_cohort(tmp_path / "cohort", bags, n_val=10)
    features = write_slide_features(tmp_path / "features", bags)
    run_dir = tmp_path / "runs" / "cohort" / "abmil"
    train_fold(tmp_path / "cohort", features, 0, "abmil", {}, TRAIN, run_dir / "fold_0")
    evaluate_model(run_dir, 1, bootstrap=0)
    (features / f"{bags[3].case_id}-01Z-00-DX1.h5").unlink()
    table = predict_patients(run_dir, tmp_path / "cohort", features, tmp_path / "p.csv")
    assert len(table) == 39 and bags[3].case_id not in set(table["case_id"])
    with pytest.raises(InputError, match="features folder"):
        predict_patients(run_dir, tmp_path / "cohort", None, tmp_path / "q.csv")


def test_predict_command_writes_csv_and_exits_2_without_an_evaluated_run(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    cohort, run_dir = trained
    ok = subprocess.run([sys.executable, "-m", "memamba", "predict", str(run_dir), "--cohort", str(cohort),
                         "-o", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "p.csv")) == 60
    bad = subprocess.run([sys.executable, "-m", "memamba", "predict", str(tmp_path), "--cohort", str(cohort),
                          "-o", str(tmp_path / "q.csv")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "checkpoint.pt" in bad.stderr
    assert not (tmp_path / "q.csv").exists()
