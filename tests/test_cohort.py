"""Tests of the cohort stage: splits, per-fold preprocessing (no leakage) and fold loading."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from memamba.cohort.folds import load_fold
from memamba.cohort.preprocess import assign_time_bins, fit_scaler, fit_time_bins
from memamba.cohort.slide_features import stack_slide_coords
from memamba.cohort.splits import check_disjoint, make_splits, read_split_file, read_splits
from memamba.errors import InputError
from memamba.genomics.build import build_cohort

BLCA_SPLITS = Path(__file__).parent / "data" / "tcga" / "blca" / "splits" / "5foldcv"
GROUPS = {"alpha": ["A", "B"], "beta": ["C", "D", "E"]}
D = 8


def synthetic_patients(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Patients with survival_months (months) and censorship, about 45 % events."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "case_id": [f"P{i:03d}" for i in range(n)],
        "survival_months": rng.exponential(30, n).round(2),
        "censorship": (rng.random(n) < 0.55).astype(np.int64),
    })


def write_cohort_table(path: Path, n: int = 15) -> pd.DataFrame:
    """MCAT-style table: patient i has slide S{i}a; patients 0 and 1 also have S{i}b."""
    rng = np.random.default_rng(1)
    patients = synthetic_patients(n, seed=3)
    patients["censorship"] = [0, 1, 0] * (n // 3)
    rows = [(case, f"S{i}{s}.svs") for i, case in enumerate(patients["case_id"]) for s in "ab"[: 2 if i < 2 else 1]]
    table = pd.DataFrame(rows, columns=["case_id", "slide_id"]).merge(patients, on="case_id")
    omics = pd.DataFrame(rng.normal(5, 2, (n, 5)), columns=[f"{g}_rnaseq" for g in "ABCDE"])
    omics["E_cnv"] = 1.0
    omics["case_id"] = patients["case_id"]
    table.merge(omics, on="case_id").to_csv(path)
    return table


def write_features(path: Path, n: int, status: str = "ok") -> None:
    with h5py.File(path, "w") as handle:
        handle["features"] = np.full((n, D), n, dtype=np.float16)
        handle["coords"] = np.arange(2 * n, dtype=np.int64).reshape(n, 2)
        handle.attrs["status"] = status


@pytest.fixture
def cohort_dir(tmp_path: Path) -> Path:
    write_cohort_table(tmp_path / "table.csv")
    build_cohort(tmp_path / "table.csv", GROUPS, tmp_path / "cohort", n_folds=3, seed=0)
    return tmp_path / "cohort"


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    """S0a 3 patches + S0b 5 patches; S1a missing, S1b status no_tissue; every other slide 4 patches."""
    folder = tmp_path / "features"
    folder.mkdir()
    write_features(folder / "S0a.h5", 3)
    write_features(folder / "S0b.h5", 5)
    write_features(folder / "S1b.h5", 0, status="no_tissue")
    for i in range(2, 15):
        write_features(folder / f"S{i}a.h5", 4)
    return folder


# --- splits -------------------------------------------------------------------------------------------


def test_make_splits_is_deterministic_for_a_seed() -> None:
    patients = synthetic_patients()
    assert make_splits(patients, 5, seed=7) == make_splits(patients, 5, seed=7)
    assert make_splits(patients, 5, seed=7) != make_splits(patients, 5, seed=8)


def test_make_splits_holds_out_every_patient_once_and_disjointly() -> None:
    patients = synthetic_patients()
    splits = make_splits(patients, 5, seed=0)
    check_disjoint(splits)
    held_out = [case for _, val in splits for case in val]
    assert sorted(held_out) == sorted(patients["case_id"])
    assert all(set(train) | set(val) == set(patients["case_id"]) for train, val in splits)


def test_make_splits_balances_events_across_folds() -> None:
    patients = synthetic_patients().set_index("case_id")
    expected = (1 - patients["censorship"]).sum() / 5
    for _, val in make_splits(patients.reset_index(), 5, seed=0):
        assert abs((1 - patients.loc[val, "censorship"]).sum() - expected) <= 1


@pytest.mark.parametrize("seed", range(3))
def test_make_splits_spreads_each_tcga_site_evenly_over_the_folds(seed: int) -> None:
    patients = synthetic_patients(seed=seed)
    patients["site"] = np.repeat(["2F", "4Z", "BT", "DK"], 50)
    sites = patients.set_index("case_id")["site"]
    for _, val in make_splits(patients, 5, seed=seed):
        assert (sites.loc[val].value_counts() - 10).abs().max() <= 2


def test_make_splits_keeps_fold_sizes_within_one() -> None:
    patients = synthetic_patients(203)
    patients["site"] = [f"S{i % 17}" for i in range(203)]
    sizes = [len(val) for _, val in make_splits(patients, 5, seed=0)]
    assert max(sizes) - min(sizes) <= 1


def test_make_splits_holds_everyone_out_when_strata_are_smaller_than_the_folds() -> None:
    patients = synthetic_patients(7)
    patients["censorship"] = [0, 1, 1, 1, 1, 1, 1]
    splits = make_splits(patients, 3, seed=0)
    assert sorted(case for _, val in splits for case in val) == sorted(patients["case_id"])


def test_check_disjoint_rejects_a_patient_trained_on_and_held_out() -> None:
    with pytest.raises(InputError, match="trains on and holds out"):
        check_disjoint([(["a", "b"], ["b"]), (["b"], ["a"])])


def test_check_disjoint_rejects_a_patient_held_out_twice() -> None:
    with pytest.raises(InputError, match="held out in several folds"):
        check_disjoint([(["b"], ["a"]), (["b"], ["a"]), (["a"], ["b"])])


def test_check_disjoint_rejects_a_patient_never_held_out() -> None:
    with pytest.raises(InputError, match=r"\['c'\].*held out in no fold"):
        check_disjoint([(["b", "c"], ["a"]), (["a", "c"], ["b"])])


def test_read_splits_ignores_mcat_padding() -> None:
    splits = read_splits(BLCA_SPLITS)
    assert [(len(train), len(val)) for train, val in splits] == [(298, 75)] * 3 + [(299, 74)] * 2
    assert not any(isinstance(case, float) for train, val in splits for case in train + val)


def test_read_split_file_rejects_an_id_outside_the_cohort() -> None:
    with pytest.raises(InputError, match=r"splits_0\.csv: case id 'TCGA-2F-A9KP' \(column train, CSV line 2\)"):
        read_split_file(BLCA_SPLITS / "splits_0.csv", cohort_ids=["TCGA-2F-A9KO"])


# --- time bins and scaler ------------------------------------------------------------------------------


def test_time_bins_use_only_uncensored_times() -> None:
    months = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 50.0, 60.0, 70.0])
    edges = fit_time_bins(months, np.array([0, 0, 0, 0, 0, 1, 1, 1]), n_bins=4)
    np.testing.assert_allclose(edges[1:-1], [2.0, 3.0, 4.0])
    assert edges[0] == 0 and edges[-1] == np.inf


def test_assign_time_bins_covers_times_outside_the_training_range() -> None:
    edges = fit_time_bins(np.array([10.0, 20.0, 30.0, 40.0]), np.zeros(4), n_bins=4)
    bins = assign_time_bins(np.array([0.0, 9.9, 10.0, 27.5, 40.0, 1e6]), edges)
    assert bins.dtype == np.int64
    assert bins.tolist() == [0, 0, 0, 2, 3, 3]


def test_zscore_scaler_centres_training_columns() -> None:
    matrix = np.random.default_rng(0).normal(3, 2, (50, 4))
    scaled = fit_scaler(matrix).transform(matrix)
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-12)


def test_robust_scaler_centres_medians() -> None:
    matrix = np.random.default_rng(0).normal(3, 2, (51, 3))
    scaled = fit_scaler(matrix, kind="robust").transform(matrix)
    np.testing.assert_allclose(np.median(scaled, axis=0), 0, atol=1e-12)


def test_constant_column_scales_to_finite_values() -> None:
    scaler = fit_scaler(np.full((5, 2), 0.1))
    scaled = scaler.transform(np.array([[0.1, 0.1], [3.0, -2.0]]))
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled[0], 0, atol=1e-12)


def test_scaler_fills_empty_cells_with_training_median() -> None:
    scaler = fit_scaler(np.array([[1.0], [2.0], [10.0], [np.nan]]), kind="none")
    assert scaler.transform(np.array([[np.nan]]))[0, 0] == 2.0


def test_unknown_scaler_kind_raises() -> None:
    with pytest.raises(InputError, match="scaler"):
        fit_scaler(np.ones((3, 2)), kind="minmax")


# --- folds -------------------------------------------------------------------------------------------


def fold_fit(cohort: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fold = load_fold(cohort, None, 0)
    train_genomics = np.stack([np.concatenate([g.numpy() for g in bag.genomics]) for bag in fold.train])
    return fold.time_bin_edges, np.stack([fold.scaler.center, fold.scaler.scale]), train_genomics


def change_patients(cohort: Path, case_ids: list[str]) -> None:
    """Give `case_ids` extreme labels (early events) and omic values, in place."""
    patients = pd.read_parquet(cohort / "patients.parquet")
    chosen = patients["case_id"].isin(case_ids)
    patients.loc[chosen, ["survival_months", "censorship", "event"]] = [0.5, 0, 1]
    patients.to_parquet(cohort / "patients.parquet", index=False)
    omics = pd.read_parquet(cohort / "omics.parquet")
    omics.loc[omics["case_id"].isin(case_ids), omics.columns[1:]] = 1e4
    omics.to_parquet(cohort / "omics.parquet", index=False)


def test_held_out_patients_do_not_change_bins_or_scaler(cohort_dir: Path) -> None:
    before = fold_fit(cohort_dir)
    _, val = read_split_file(cohort_dir / "splits" / "splits_0.csv")
    change_patients(cohort_dir, val)
    for fitted, refitted in zip(before, fold_fit(cohort_dir), strict=True):
        np.testing.assert_array_equal(fitted, refitted)


def test_training_patients_do_change_bins_and_scaler(cohort_dir: Path) -> None:
    before = fold_fit(cohort_dir)
    train, _ = read_split_file(cohort_dir / "splits" / "splits_0.csv")
    change_patients(cohort_dir, train[:3])
    after = fold_fit(cohort_dir)
    assert not np.array_equal(before[0], after[0])
    assert not np.array_equal(before[1], after[1])


def test_genomics_only_fold_scales_training_groups_to_zero_mean(cohort_dir: Path) -> None:
    fold = load_fold(cohort_dir, None, 1)
    assert fold.group_names == ["alpha", "beta"] and fold.group_sizes == [2, 4]
    assert fold.feature_dim == 0 and fold.dropped == []
    bag = fold.train[0]
    assert tuple(bag.features.shape) == (0, 0) and tuple(bag.coords.shape) == (0, 2)
    for index, size in enumerate(fold.group_sizes):
        stacked = np.stack([b.genomics[index].numpy() for b in fold.train])
        assert stacked.dtype == np.float32 and stacked.shape[1] == size
        np.testing.assert_allclose(stacked.mean(axis=0), 0, atol=1e-5)


def test_val_bags_use_training_bin_edges(cohort_dir: Path) -> None:
    fold = load_fold(cohort_dir, None, 0, n_bins=3)
    for bag in fold.val:
        assert bag.time_bin == int(assign_time_bins(np.array([bag.survival_months]), fold.time_bin_edges)[0])
    assert len(fold.time_bin_edges) == 4


def test_fold_concatenates_each_patients_slides(cohort_dir: Path, features_dir: Path) -> None:
    folds = [load_fold(cohort_dir, features_dir, k) for k in range(3)]
    bags = {bag.case_id: bag for fold in folds for bag in fold.train + fold.val}
    first = bags["P000"]
    assert tuple(first.features.shape) == (8, D) and tuple(first.coords.shape) == (8, 2)
    assert first.features.dtype.is_floating_point and str(first.features.dtype) == "torch.float32"
    assert first.features[:3].eq(3).all() and first.features[3:].eq(5).all()
    assert tuple(bags["P002"].features.shape) == (4, D)
    assert folds[0].feature_dim == D


def test_second_slide_is_stacked_below_the_first_on_the_patient_canvas() -> None:
    first = np.array([[0, 0], [256, 0], [0, 256]])
    second = np.array([[512, 0], [0, 512]])
    stacked = stack_slide_coords([first, second])
    np.testing.assert_array_equal(stacked[:3], first)
    np.testing.assert_array_equal(stacked[3:, 0], second[:, 0])
    assert stacked[3:, 1].min() > first[:, 1].max()
    np.testing.assert_array_equal(np.diff(stacked[3:, 1]), np.diff(second[:, 1]))


def test_patient_without_usable_slide_is_dropped_with_warning(
    cohort_dir: Path, features_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        folds = [load_fold(cohort_dir, features_dir, k) for k in range(3)]
    assert [case for fold in folds for case in fold.dropped] == ["P001"] * 3
    assert all(bag.case_id != "P001" for fold in folds for bag in fold.train + fold.val)
    assert "S1a.h5: feature file missing" in caplog.text and "no_tissue" in caplog.text


def test_missing_fold_raises(cohort_dir: Path) -> None:
    with pytest.raises(InputError, match=r"splits_3\.csv: fold 3 does not exist"):
        load_fold(cohort_dir, None, 3)
