"""Build a cohort folder (patients, omics, gene groups, splits, summary) from genomic tables."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from memamba import __version__
from memamba.cohort.splits import Split, make_splits, read_splits, write_splits
from memamba.cohort.store import GROUPS_FILE, OMICS_FILE, PATIENTS_FILE, SPLITS_DIR, SUMMARY_FILE
from memamba.errors import InputError
from memamba.genomics.assemble import assemble_patients
from memamba.genomics.clinical import check_endpoint
from memamba.genomics.groups import OMIC_SUFFIXES, OMICS, load_gene_groups, match_groups
from memamba.genomics.inputs import gather_inputs
from memamba.io import atomic_output

log = logging.getLogger(__name__)


def build_cohort(
    table: str | Path | None,
    groups: str | Path | Mapping[str, list[str]],
    out_dir: str | Path,
    *,
    clinical: str | Path | None = None,
    slides: str | Path | None = None,
    expression: str | Path | None = None,
    cnv: str | Path | None = None,
    mutations: str | Path | None = None,
    endpoint: str = "os",
    omics: Sequence[str] = OMICS,
    splits_dir: str | Path | None = None,
    n_folds: int = 5,
    seed: int = 0,
    nan_policy: str = "fail",
    missing_policy: str = "drop",
    expression_transform: str = "none",
) -> dict:
    """Write the cohort folder `out_dir` and return its summary.

    Inputs (`gather_inputs`): an MCAT-style table (rows = slides) and/or raw files: clinical patient
    table, slides folder or CSV, expression (optionally log2(x + 1), `expression_transform`) and
    copy-number matrices, mutation MAF. endpoint: "os",
    "dss" or "pfi". groups: a builtin name (`BUILTIN_GROUPS`), a .gmt or CSV path, or a name → genes
    mapping, matched to the columns of the omics named in `omics`. Patients without a label, a slide or
    an omic are dropped with a warning or fail (`missing_policy`). Files: patients.parquet,
    omics.parquet, groups.json, splits/splits_{k}.csv, summary.json. Splits come from `splits_dir` (MCAT
    files; then the files decide the number of folds; dropped patients are removed from them) or from
    `make_splits(patients, n_folds, seed)`. The folder appears complete or not at all.
    """
    endpoint = check_endpoint(endpoint)
    inputs = gather_inputs(
        table=table,
        clinical=clinical,
        slides=slides,
        expression=expression,
        cnv=cnv,
        mutations=mutations,
        endpoint=endpoint,
        nan_policy=nan_policy,
        expression_transform=expression_transform,
    )
    definitions = groups if isinstance(groups, Mapping) else load_gene_groups(groups)
    source = "/".join(dict.fromkeys(inputs.sources[suffix] for suffix in OMIC_SUFFIXES if suffix in inputs.sources))
    matched, missing = match_groups(definitions, inputs.omics.columns, source=source, omics=omics)
    used = list(dict.fromkeys(column for columns in matched.values() for column in columns))
    patients, omic_values, dropped = assemble_patients(
        inputs, used, missing_policy=missing_policy, nan_policy=nan_policy
    )
    if splits_dir is None:
        splits = make_splits(patients, n_folds, seed)
    else:
        gone = {case for cases in dropped.values() for case in cases}
        splits = read_splits(splits_dir, cohort_ids=[*patients["case_id"], *gone])
        splits = _without(splits, gone, splits_dir)
        _check_covered(splits, patients, splits_dir)
    summary = _summary(inputs.slides, patients, omic_values, matched, missing, splits)
    summary.update(
        endpoint=endpoint,
        sources={role.lstrip("_"): path for role, path in inputs.sources.items()},
        omics=list(omics),
        groups=str(groups) if not isinstance(groups, Mapping) else "custom",
        dropped={reason: cases for reason, cases in dropped.items()},
        nan_policy=nan_policy,
        missing_policy=missing_policy,
        expression_transform=expression_transform,
        split_source="files" if splits_dir is not None else "stratified",
        splits_dir=None if splits_dir is None else str(splits_dir),
        seed=None if splits_dir is not None else seed, memamba_version=__version__,
    )
    groups_json = {"groups": matched, "missing_genes": missing}
    writers: list[tuple[str, Callable[[Path], object]]] = [
        (PATIENTS_FILE, lambda path: patients.to_parquet(path, index=False)),
        (OMICS_FILE, lambda path: omic_values.to_parquet(path, index=False)),
        (GROUPS_FILE, lambda path: _write_json(groups_json, path)),
        (SUMMARY_FILE, lambda path: _write_json(summary, path)),
    ]
    _write_folder(Path(out_dir), writers, splits)
    log.info("cohort %s: %d patients, %d slides, %d events, %d folds", out_dir, summary["patients"],
             summary["slides"], summary["events"], summary["n_folds"])
    return summary


def _without(splits: list[Split], gone: set[str], splits_dir: str | Path) -> list[Split]:
    removed = sorted(gone & {case for train, val in splits for case in train + val})
    if removed:
        log.warning(
            "%s: %d patients dropped from the cohort are removed from the split files (e.g. %s)",
            splits_dir,
            len(removed),
            ", ".join(removed[:3]),
        )
    return [([c for c in train if c not in gone], [c for c in val if c not in gone]) for train, val in splits]


def _check_covered(splits: list[Split], patients: pd.DataFrame, splits_dir: str | Path) -> None:
    held_out = {case for _, val in splits for case in val}
    uncovered = [case for case in patients["case_id"] if case not in held_out]
    if uncovered:
        raise InputError(
            f"{splits_dir}: patients {uncovered[:3]} ({len(uncovered)} in all) of the table are held out "
            "in no split file; use split files made for this table or let memamba make the splits"
        )


def _summary(slides: pd.DataFrame, patients: pd.DataFrame, omics: pd.DataFrame,
             matched: dict[str, list[str]], missing: dict[str, list[str]], splits: list[Split]) -> dict:
    n_patients = len(patients)
    return {
        "patients": n_patients,
        "slides": int(slides["case_id"].isin(set(patients["case_id"])).sum()),
        "events": int(patients["event"].sum()),
        "censoring_rate": float(patients["censorship"].mean()),
        "median_survival_months": float(patients["survival_months"].median()),
        "group_sizes": {name: len(columns) for name, columns in matched.items()},
        "omic_columns": omics.shape[1] - 1,
        "omic_nan_cells": int(omics.drop(columns="case_id").isna().to_numpy().sum()),
        "missing_genes": {name: len(genes) for name, genes in missing.items()},
        "held_out_per_fold": [len(val) for _, val in splits],
        "n_folds": len(splits),
    }


def _write_json(payload: dict, path: Path) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _write_folder(out_dir: Path, writers: list[tuple[str, Callable[[Path], object]]],
                  splits: list[Split]) -> None:
    """Write every file into a staging folder beside `out_dir`, then swap it in (old contents replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; choose another output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    retired = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    try:
        for name, write in writers:
            with atomic_output(staging / name) as temporary:
                write(temporary)
        write_splits(splits, staging / SPLITS_DIR)
        if out_dir.exists():
            os.replace(out_dir, retired)
        try:
            os.replace(staging, out_dir)
        except OSError:
            if retired.exists():
                os.replace(retired, out_dir)
            raise
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
