"""Patient-level cross-validation splits: read/write MCAT split files, make stratified folds, check them."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.io import atomic_output

log = logging.getLogger(__name__)

Split = tuple[list[str], list[str]]
"""(training case ids, held-out case ids) of one fold."""

_SPLIT_NAME = re.compile(r"splits_(\d+)\.csv")
_MAX_TIME_STRATA = 4


def split_path(splits_dir: str | Path, fold: int) -> Path:
    """The MCAT file name of fold `fold`: `{splits_dir}/splits_{fold}.csv`."""
    return Path(splits_dir) / f"splits_{fold}.csv"


def read_splits(splits_dir: str | Path, *, cohort_ids: Iterable[str] | None = None) -> list[Split]:
    """Read MCAT split files `splits_0.csv … splits_{K-1}.csv` (columns train, val; empty padding ignored).

    With `cohort_ids`, an id that is not in the cohort raises InputError naming the file and the id.
    The folds are checked with `check_disjoint`.
    """
    folder = Path(splits_dir)
    found = sorted(int(match.group(1)) for path in folder.glob("splits_*.csv")
                   if (match := _SPLIT_NAME.fullmatch(path.name)))
    if not found:
        raise InputError(f"{folder}: no split files splits_0.csv, splits_1.csv, …; pass MCAT's split folder")
    if found != list(range(len(found))):
        absent = sorted(set(range(max(found) + 1)) - set(found))
        raise InputError(f"{folder}: split files are not numbered 0…{max(found)} (missing "
                         f"{[split_path(folder, k).name for k in absent]}); add them or renumber")
    splits = [read_split_file(split_path(folder, k), cohort_ids=cohort_ids) for k in found]
    check_disjoint(splits, source=str(folder))
    return splits


def read_split_file(path: str | Path, *, cohort_ids: Iterable[str] | None = None) -> Split:
    """Read one MCAT split file: (train ids, val ids) in file order, NaN padding dropped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: split file not found; rebuild the cohort or pass the right folder")
    table = pd.read_csv(path, index_col=0, dtype="str")
    missing = [column for column in ("train", "val") if column not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; an MCAT split file has columns ',train,val'")
    known = None if cohort_ids is None else set(cohort_ids)
    columns = []
    for column in ("train", "val"):
        ids = table[column].str.strip()
        if known is not None:
            unknown = ids.notna() & ~ids.isin(known)
            if unknown.any():
                line = int(np.flatnonzero(unknown.to_numpy())[0]) + 2
                raise InputError(
                    f"{path}: case id '{ids[unknown].iloc[0]}' (column {column}, CSV line {line}) is not "
                    f"in the cohort ({int(unknown.sum())} such ids); use split files made for this table "
                    "or let memamba make the splits"
                )
        columns.append(ids.dropna().tolist())
    return columns[0], columns[1]


def write_splits(splits: list[Split], splits_dir: str | Path) -> list[Path]:
    """Write `splits_{k}.csv` in MCAT layout (unnamed index, train, val; the shorter column padded empty)."""
    paths = []
    for fold, (train, val) in enumerate(splits):
        table = pd.DataFrame({"train": pd.Series(train, dtype=object), "val": pd.Series(val, dtype=object)})
        with atomic_output(split_path(splits_dir, fold)) as temporary:
            table.to_csv(temporary)
        paths.append(split_path(splits_dir, fold))
    return paths


def make_splits(patients: pd.DataFrame, n_folds: int, seed: int) -> list[Split]:
    """Patient-level stratified K-fold, seeded; each patient is held out exactly once.

    patients: one row per patient with case_id, survival_months, censorship. Strata combine the event
    indicator with quantile bins of survival time (up to 4); the time bins are merged (4 → 3 → 2 → 1)
    while a stratum has fewer than `n_folds` patients, then plain shuffled K-fold is used.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    ids = patients["case_id"].astype(str).to_numpy()
    if not 2 <= n_folds <= len(ids):
        raise InputError(f"n_folds must be between 2 and the number of patients ({len(ids)}), got {n_folds}")
    strata = _strata(patients, n_folds)
    if strata is None:
        log.warning("too few patients per event/time stratum for %d folds: splitting without strata", n_folds)
        folds = KFold(n_folds, shuffle=True, random_state=seed).split(ids)
    else:
        folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(ids, strata)
    return [(ids[train].tolist(), ids[val].tolist()) for train, val in folds]


def _strata(patients: pd.DataFrame, n_folds: int) -> np.ndarray | None:
    events = 1 - patients["censorship"].to_numpy(dtype=np.int64)
    for n_time in range(_MAX_TIME_STRATA, 0, -1):
        time_bins = pd.qcut(patients["survival_months"].rank(method="first"), n_time, labels=False)
        strata = events * n_time + time_bins.to_numpy(dtype=np.int64)
        if min(Counter(strata.tolist()).values()) >= n_folds:
            log.info("splits stratified by event x %d survival-time bins", n_time)
            return strata
    return None


def check_disjoint(splits: list[Split], *, source: str = "splits") -> None:
    """Raise InputError unless every fold's held-out ids are disjoint from its training ids and every
    patient named in the splits is held out in exactly one fold (`source` names the files in messages)."""
    held_out: Counter[str] = Counter()
    everyone: set[str] = set()
    for fold, (train, val) in enumerate(splits):
        for name, ids in (("train", train), ("val", val)):
            repeated = [case for case, count in Counter(ids).items() if count > 1]
            if repeated:
                raise InputError(f"{source}: fold {fold} lists {repeated[:3]} twice in {name}; list each once")
        both = sorted(set(train) & set(val))
        if both:
            raise InputError(f"{source}: fold {fold} trains on and holds out the same patients "
                             f"{both[:3]} ({len(both)} in all); each patient belongs to one side")
        held_out.update(val)
        everyone.update(train, val)
    twice = sorted(case for case, count in held_out.items() if count > 1)
    if twice:
        raise InputError(f"{source}: patients {twice[:3]} ({len(twice)} in all) are held out in several "
                         "folds; each must be held out exactly once")
    never = sorted(everyone - set(held_out))
    if never:
        raise InputError(f"{source}: patients {never[:3]} ({len(never)} in all) are held out in no fold; "
                         "each must be held out exactly once")
