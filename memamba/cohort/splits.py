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

    patients: one row per patient with case_id, survival_months, censorship and optionally `site` (TCGA
    tissue source site). Strata, in priority order: event indicator, quartile of survival time within
    it, site. The patients are shuffled with `seed`, sorted (stably) by stratum and each is held out in
    the fold where its event group is least represented, ties broken by its event × time cell, then its
    site, then the fold size, then a seeded random order. The held-out counts of each event group thus
    differ by at most one between folds, and cells and sites stay nearly as even.
    """
    ids = patients["case_id"].astype(str).to_numpy()
    if not 2 <= n_folds <= len(ids):
        raise InputError(f"n_folds must be between 2 and the number of patients ({len(ids)}), got {n_folds}")
    rng = np.random.default_rng(seed)
    events = 1 - patients["censorship"].to_numpy(dtype=np.int64)
    keys = pd.DataFrame(
        {
            "event": events,
            "cell": events * 4 + _time_quartiles(patients["survival_months"].to_numpy(dtype=np.float64), events),
        }
    )
    strata = ["event", "cell"]
    if "site" in patients.columns:
        keys["site"] = patients["site"].astype(str).to_numpy()
        strata.append("site")
    keys = keys.iloc[rng.permutation(len(ids))].sort_values(strata, kind="stable")
    counts: dict[tuple[str, object], np.ndarray] = {}
    sizes = np.zeros(n_folds, dtype=np.int64)
    fold_of = np.empty(len(ids), dtype=np.int64)
    for position, row in zip(keys.index, keys.itertuples(index=False), strict=True):
        tallies = [
            counts.setdefault((name, value), np.zeros(n_folds, dtype=np.int64))
            for name, value in zip(strata, row, strict=True)
        ]
        fold = int(np.lexsort((rng.random(n_folds), sizes, *reversed(tallies)))[0])
        for tally in tallies:
            tally[fold] += 1
        sizes[fold] += 1
        fold_of[position] = fold
    log.info("splits: %d folds stratified by %s", n_folds, " x ".join(strata))
    return [(ids[fold_of != k].tolist(), ids[fold_of == k].tolist()) for k in range(n_folds)]


def _time_quartiles(months: np.ndarray, events: np.ndarray) -> np.ndarray:
    """int64 [n]: quartile (0-3) of each survival time among the patients of the same event group."""
    quartiles = np.zeros(len(months), dtype=np.int64)
    for group in (0, 1):
        members = np.flatnonzero(events == group)
        if members.size:
            ranks = pd.Series(months[members]).rank(method="first").to_numpy()
            quartiles[members] = np.minimum(((ranks - 1) * 4 // members.size).astype(np.int64), 3)
    return quartiles


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
