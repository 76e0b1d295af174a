"""The cohort folder that `memamba genomics` writes: file names and a reader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from memamba.errors import InputError

PATIENTS_FILE = "patients.parquet"
OMICS_FILE = "omics.parquet"
GROUPS_FILE = "groups.json"
SPLITS_DIR = "splits"
SUMMARY_FILE = "summary.json"


@dataclass
class Cohort:
    """A cohort folder in memory.

    patients: one row per patient (case_id, slide_ids, survival_months, censorship, event, …).
    omics: raw omic values [patients, columns], indexed by case_id in the order of `patients`.
    groups: group name → its omic columns (fixed order); missing_genes: group name → unmatched genes.
    """

    patients: pd.DataFrame
    omics: pd.DataFrame
    groups: dict[str, list[str]]
    missing_genes: dict[str, list[str]]


def read_cohort(cohort_dir: str | Path) -> Cohort:
    """Read patients.parquet, omics.parquet and groups.json of a cohort folder."""
    folder = Path(cohort_dir)
    for name in (PATIENTS_FILE, OMICS_FILE, GROUPS_FILE):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: cohort file not found; build the cohort with memamba genomics")
    patients = pd.read_parquet(folder / PATIENTS_FILE)
    omics = pd.read_parquet(folder / OMICS_FILE).set_index("case_id")
    groups_json = json.loads((folder / GROUPS_FILE).read_text(encoding="utf-8"))
    absent = sorted(set(patients["case_id"]) - set(omics.index))
    if absent:
        raise InputError(f"{folder / OMICS_FILE}: no omic row for patients {absent[:3]}; rebuild the cohort")
    unknown = sorted({column for columns in groups_json["groups"].values() for column in columns}
                     - set(omics.columns))
    if unknown:
        raise InputError(f"{folder / GROUPS_FILE}: columns {unknown[:3]} are not in {OMICS_FILE}; "
                         "rebuild the cohort")
    return Cohort(
        patients=patients.reset_index(drop=True),
        omics=omics.loc[patients["case_id"]],
        groups=groups_json["groups"],
        missing_genes=groups_json.get("missing_genes", {}),
    )
