"""Load one cross-validation fold as patient bags, with bins and scaler fitted on its training patients."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memamba.cohort.bags import PatientBag
from memamba.cohort.preprocess import Scaler, assign_time_bins, fit_scaler, fit_time_bins
from memamba.cohort.slide_features import patient_features
from memamba.cohort.splits import read_split_file, split_path
from memamba.cohort.store import SPLITS_DIR, Cohort, read_cohort
from memamba.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class FoldData:
    """One fold, ready for training.

    train, val: patient bags (val scaled and binned with the training fit).
    time_bin_edges: float64 [n_bins + 1] in months (`fit_time_bins`, training patients only).
    group_names, group_sizes: genomic groups in fixed order and their vector lengths g_i.
    feature_dim: D of the patch features (0 for genomics-only bags).
    scaler: the genomic scaler fitted on the training patients (over all omic columns).
    dropped: case ids left out because none of their slides had usable features.
    """

    train: list[PatientBag]
    val: list[PatientBag]
    time_bin_edges: np.ndarray
    group_names: list[str]
    group_sizes: list[int]
    feature_dim: int
    scaler: Scaler
    dropped: list[str] = field(default_factory=list)


def load_fold(
    cohort_dir: str | Path,
    features_dir: str | Path | None,
    fold: int,
    *,
    n_bins: int = 4,
    scaler: str = "zscore",
) -> FoldData:
    """Read fold `fold` of a cohort folder into `FoldData`.

    Time bins and the genomic scaler are fitted on every training patient of the split (labels and
    omics of held-out patients are never read by the fit). Patch features come from
    `{features_dir}/{slide_key}.h5`; slides whose file is missing, not "ok" or empty are skipped, and a
    patient left with no slide is dropped (warning, listed in `dropped`). features_dir=None gives
    genomics-only bags with features [0, 0] and coords [0, 2].
    """
    cohort_dir = Path(cohort_dir)
    if features_dir is not None and not Path(features_dir).is_dir():
        raise InputError(f"{features_dir}: features folder not found; run the features stage first")
    cohort = read_cohort(cohort_dir)
    path = split_path(cohort_dir / SPLITS_DIR, fold)
    if not path.is_file():
        raise InputError(f"{path}: fold {fold} does not exist in this cohort; choose a fold listed in "
                         f"{cohort_dir / SPLITS_DIR}")
    train_ids, val_ids = read_split_file(path, cohort_ids=cohort.patients["case_id"])
    overlap = sorted(set(train_ids) & set(val_ids))
    if overlap:
        raise InputError(f"{path}: patients {overlap[:3]} are both in train and val; fix the split file")
    patients = cohort.patients.set_index("case_id")
    train = patients.loc[train_ids]
    if not (train["censorship"] == 0).any():
        raise InputError(f"{path}: no training patient of fold {fold} has an event (censorship 0); time "
                         "bins need events, so use other splits")
    edges = fit_time_bins(train["survival_months"].to_numpy(), train["censorship"].to_numpy(), n_bins)
    fitted = fit_scaler(cohort.omics.loc[train_ids].to_numpy(), kind=scaler)
    builder = _BagBuilder(cohort, fitted, edges, None if features_dir is None else Path(features_dir))
    train_bags = builder.bags(train_ids)
    val_bags = builder.bags(val_ids)
    if not train_bags:
        raise InputError(f"{features_dir}: no training patient of fold {fold} has usable slide features; "
                         "run the features stage for this cohort")
    if builder.dropped:
        log.warning("fold %d: %d patients dropped for lack of usable slide features (%s)", fold,
                    len(builder.dropped), ", ".join(builder.dropped[:5]))
    return FoldData(
        train=train_bags, val=val_bags, time_bin_edges=edges, group_names=list(cohort.groups),
        group_sizes=[len(columns) for columns in cohort.groups.values()],
        feature_dim=builder.feature_dim or 0, scaler=fitted, dropped=builder.dropped,
    )


class _BagBuilder:
    """Turns case ids into `PatientBag`s with one fold's fitted bins and scaler."""

    def __init__(self, cohort: Cohort, scaler: Scaler, edges: np.ndarray, features_dir: Path | None):
        self.patients = cohort.patients.set_index("case_id")
        self.omics = cohort.omics
        positions = {column: index for index, column in enumerate(cohort.omics.columns)}
        self.group_columns = [np.array([positions[c] for c in columns]) for columns in cohort.groups.values()]
        self.scaler, self.edges, self.features_dir = scaler, edges, features_dir
        self.feature_dim: int | None = None
        self.dropped: list[str] = []

    def bags(self, case_ids: list[str]) -> list[PatientBag]:
        import torch

        labels = self.patients.loc[case_ids]
        bins = assign_time_bins(labels["survival_months"].to_numpy(), self.edges)
        genomics = self.scaler.transform(self.omics.loc[case_ids].to_numpy()).astype(np.float32)
        bags = []
        for row, case in enumerate(case_ids):
            slides = self._slides(case, labels["slide_ids"].iloc[row])
            if slides is None:
                continue
            bags.append(PatientBag(
                case_id=case,
                features=torch.from_numpy(slides[0]),
                coords=torch.from_numpy(slides[1]),
                genomics=[torch.from_numpy(genomics[row, columns].copy()) for columns in self.group_columns],
                time_bin=int(bins[row]),
                survival_months=float(labels["survival_months"].iloc[row]),
                censorship=int(labels["censorship"].iloc[row]),
            ))
        return bags

    def _slides(self, case: str, slide_ids: str) -> tuple[np.ndarray, np.ndarray] | None:
        if self.features_dir is None:
            return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 2), dtype=np.int64)
        slides = patient_features(self.features_dir, slide_ids.split(";"), self.feature_dim)
        if slides is None:
            log.warning("patient %s: no usable slide features in %s; patient dropped", case, self.features_dir)
            self.dropped.append(case)
            return None
        self.feature_dim = slides[0].shape[1]
        return slides
