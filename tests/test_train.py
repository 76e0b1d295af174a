"""Training a fold: learning a planted signal, determinism, NaN reporting, outputs and the final-epoch rule."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from memamba.cohort.bags import PatientBag
from memamba.errors import InputError
from memamba.evaluate.metrics import harrell_c
from memamba.models.base import ModelOutput
from memamba.models.registry import build_model
from memamba.train.engine import NonFiniteLossError, cap_patches, make_optimizer, train_epoch
from memamba.train.loop import run_fold, train_fold
from memamba.train.params import TrainParams

FEATURE_DIM = 8
N_BINS = 4
FAST = {"epochs": 2, "lr": 1e-2, "grad_accum": 8}


class MeanPoolModel(torch.nn.Module):
    """Tiny test model: mean of the patch features and of the genomic groups -> linear -> hazard logits."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_genes: int = 3) -> None:
        super().__init__()
        self.head = torch.nn.Linear(feature_dim + n_genes, N_BINS)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, genomics: list[torch.Tensor]) -> ModelOutput:
        pooled = torch.cat([features.mean(dim=0), torch.cat(genomics)])
        return ModelOutput(logits=self.head(pooled), aux_loss=torch.zeros(()))


def planted_bags(n: int, seed: int, prefix: str) -> list[PatientBag]:
    """Bags whose patch-feature and genomic means are a latent risk; survival has hazard rate ∝ exp(2·risk)."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_months = rng.exponential(30.0 * np.exp(-2.0 * risk))
    censor_months = rng.exponential(60.0, n)
    bags = []
    for i in range(n):
        n_patches = int(rng.integers(5, 20))
        features = rng.normal(size=(n_patches, FEATURE_DIM)) + risk[i]
        bags.append(
            PatientBag(
                case_id=f"{prefix}-{i:04d}",
                features=torch.tensor(features, dtype=torch.float32),
                coords=torch.tensor(rng.integers(0, 10_000, size=(n_patches, 2)), dtype=torch.int64),
                genomics=[torch.tensor(risk[i] + 0.3 * rng.normal(size=3), dtype=torch.float32)],
                time_bin=0,
                survival_months=float(min(event_months[i], censor_months[i])),
                censorship=int(censor_months[i] < event_months[i]),
            )
        )
    return bags


def planted_fold(n_train: int = 120, n_val: int = 60) -> SimpleNamespace:
    """A FoldData-like fold with MCAT-style bins (quartiles of uncensored training times)."""
    train, val = planted_bags(n_train, 0, "TCGA-TR"), planted_bags(n_val, 1, "TCGA-VA")
    uncensored = [bag.survival_months for bag in train if bag.censorship == 0]
    edges = np.quantile(uncensored, np.linspace(0, 1, N_BINS + 1))
    edges[0], edges[-1] = 0.0, np.inf
    for bag in train + val:
        bag.time_bin = int(np.searchsorted(edges[1:-1], bag.survival_months, side="right"))
    return SimpleNamespace(
        train=train, val=val, time_bin_edges=edges, group_names=["genes"], group_sizes=[3],
        feature_dim=FEATURE_DIM, dropped=[],
    )


def train(fold: SimpleNamespace, out_dir: Path, **overrides: object) -> dict:
    params = TrainParams.from_dict({**FAST, **overrides})
    return run_fold(
        fold, MeanPoolModel, fold=0, model_name="meanpool", model_params={}, params=params, out_dir=out_dir
    )


def test_planted_signal_is_learned_to_held_out_c_above_0_7(tmp_path: Path) -> None:
    record = train(planted_fold(), tmp_path)
    assert record["metrics"]["c_index"]["value"] > 0.7


def test_training_is_deterministic_on_cpu(tmp_path: Path) -> None:
    fold = planted_fold(40, 20)
    train(fold, tmp_path / "a", epochs=2, max_patches=4)
    train(fold, tmp_path / "b", epochs=2, max_patches=4)
    assert (tmp_path / "a/risks.csv").read_bytes() == (tmp_path / "b/risks.csv").read_bytes()


def test_nan_loss_raises_naming_patient_epoch_and_step(tmp_path: Path) -> None:
    fold = planted_fold(20, 5)
    fold.train[7].features[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"TCGA-TR-0007 at epoch 1, step \d+ of 20"):
        train(fold, tmp_path, epochs=1)
    assert not (tmp_path / "metrics.json").exists()


def test_outputs_exist_and_parse(tmp_path: Path) -> None:
    fold = planted_fold(30, 12)
    train(fold, tmp_path, epochs=3)
    risks = pd.read_csv(tmp_path / "risks.csv")
    assert list(risks.columns) == [
        "case_id", "risk", "survival_months", "censorship", "time_bin", "surv_1", "surv_2", "surv_3", "surv_4",
    ]
    assert risks["case_id"].tolist() == [bag.case_id for bag in fold.val]
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["epoch"].tolist() == [1, 2, 3]
    assert set(curve.columns) == {"epoch", "train_loss", "train_c_index"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_val"], metrics["model"]) == (30, 12, "meanpool")
    assert set(metrics["metrics"]) == {"c_index", "c_index_uno", "ibs", "mean_auc"}
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    model = MeanPoolModel()
    model.load_state_dict(checkpoint["model_state"])
    assert checkpoint["group_sizes"] == [3]


def test_held_out_metrics_come_from_the_final_epoch(tmp_path: Path) -> None:
    fold = planted_fold(40, 20)
    one = train(fold, tmp_path / "one", epochs=1)
    two = train(fold, tmp_path / "two", epochs=2)
    risks_one = pd.read_csv(tmp_path / "one/risks.csv")
    risks_two = pd.read_csv(tmp_path / "two/risks.csv")
    assert not np.allclose(risks_one["risk"], risks_two["risk"])
    assert (one["epochs"], two["epochs"]) == (1, 2)
    recomputed = harrell_c(risks_two["survival_months"], risks_two["censorship"], risks_two["risk"])
    assert two["metrics"]["c_index"]["value"] == pytest.approx(recomputed["value"])


def test_optimizer_steps_every_grad_accum_bags_and_at_epoch_end() -> None:
    fold = planted_fold(20, 1)
    params = TrainParams.from_dict({"grad_accum": 8})
    model = MeanPoolModel()
    optimizer = make_optimizer(model, params)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    train_epoch(model, fold.train, optimizer, params, epoch=1, generator=torch.Generator().manual_seed(0),
                device=torch.device("cpu"))
    assert len(steps) == 3  # after bags 8, 16 and the last partial group of 4


def test_patch_cap_keeps_a_random_subset_in_spatial_order() -> None:
    bag = planted_bags(1, 3, "TCGA-CP")[0]
    bag.coords = torch.arange(2 * len(bag.coords)).reshape(-1, 2)
    features, coords = cap_patches(bag, 4, torch.Generator().manual_seed(0))
    assert features.shape == (4, FEATURE_DIM)
    assert (coords[1:, 0] > coords[:-1, 0]).all()


def test_unknown_train_param_is_an_input_error() -> None:
    with pytest.raises(InputError, match="learning_rate"):
        TrainParams.from_dict({"learning_rate": 1e-3})


def test_snn_from_the_registry_learns_a_planted_genomic_signal_in_one_epoch(tmp_path: Path) -> None:
    fold = planted_fold()
    params = TrainParams.from_dict({"epochs": 1, "lr": 5e-3, "grad_accum": 4})

    def make_snn() -> torch.nn.Module:
        return build_model("snn", feature_dim=FEATURE_DIM, group_sizes=[3], n_bins=N_BINS, d_model=16)

    record = run_fold(fold, make_snn, fold=0, model_name="snn", model_params={"d_model": 16}, params=params,
                      out_dir=tmp_path)
    assert record["metrics"]["c_index"]["value"] > 0.7


def write_cohort(cohort_dir: Path, bags: list[PatientBag], n_val: int) -> None:
    """A genomics-only cohort folder (the files `memamba genomics` writes) holding these bags' labels/omics."""
    (cohort_dir / "splits").mkdir(parents=True)
    case_ids = [bag.case_id for bag in bags]
    pd.DataFrame({
        "case_id": case_ids, "slide_ids": [f"{case}-01Z-00-DX1" for case in case_ids],
        "survival_months": [bag.survival_months for bag in bags], "censorship": [bag.censorship for bag in bags],
        "event": [1 - bag.censorship for bag in bags],
    }).to_parquet(cohort_dir / "patients.parquet")
    genes = ["TP53", "EGFR", "MYC"]
    omics = pd.DataFrame(np.stack([bag.genomics[0].numpy() for bag in bags]), columns=genes)
    omics.insert(0, "case_id", case_ids)
    omics.to_parquet(cohort_dir / "omics.parquet")
    (cohort_dir / "groups.json").write_text(json.dumps({"groups": {"genes": genes}, "missing_genes": {}}))
    split = pd.DataFrame({"train": pd.Series(case_ids[n_val:]), "val": pd.Series(case_ids[:n_val])})
    split.to_csv(cohort_dir / "splits" / "splits_0.csv")


def test_train_fold_runs_end_to_end_on_a_cohort_folder(tmp_path: Path) -> None:
    write_cohort(tmp_path / "cohort", planted_bags(60, 4, "TCGA-CO"), n_val=20)
    record = train_fold(tmp_path / "cohort", None, 0, "snn", {"d_model": 16}, {"epochs": 2, "grad_accum": 8},
                        tmp_path / "fold_0")
    assert (record["n_train"], record["n_val"], record["epochs"]) == (40, 20, 2)
    assert len(record["time_bin_edges"]) == N_BINS + 1
    assert len(pd.read_csv(tmp_path / "fold_0/risks.csv")) == 20
    checkpoint = torch.load(tmp_path / "fold_0/checkpoint.pt", weights_only=False)
    assert (checkpoint["model_name"], checkpoint["group_names"]) == ("snn", ["genes"])
