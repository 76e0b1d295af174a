"""Match patients across labels, slides and omics: keep complete patients, drop or fail on the others."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from memamba.errors import InputError
from memamba.genomics.barcodes import tissue_source_site
from memamba.genomics.groups import OMIC_SUFFIXES
from memamba.genomics.inputs import CohortInputs
from memamba.naming import slide_key

log = logging.getLogger(__name__)

MISSING_POLICIES: tuple[str, ...] = ("drop", "fail")
DROP_REASONS: dict[str, str] = {
    "no_label": "have no survival label",
    "no_slides": "have no slide",
    "no_genomics": "have no value in one of the omics",
}
"""Why a patient can leave the cohort, with the phrase used in messages."""


def assemble_patients(
    inputs: CohortInputs, columns: list[str], *, missing_policy: str = "drop", nan_policy: str = "fail"
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """(patients, omics, dropped) for the patients that have a label, a slide and every omic.

    patients: case_id, slide_ids (";"-joined slide keys), survival_months, censorship, event, extras
    (oncotree_code; site, from the TCGA id when the source has none), in label order. omics: case_id +
    `columns` (float64, raw). dropped: reason (`DROP_REASONS`) → case ids. A patient lacks an omic when
    all its `columns` of that omic are empty. missing_policy "fail" raises InputError naming the source
    file and the first patients instead of dropping; nan_policy "fail" raises on an empty cell left in a
    kept patient's omics ("impute" keeps it for the per-fold median fill).
    """
    if missing_policy not in MISSING_POLICIES:
        raise InputError(f"missing policy must be one of {list(MISSING_POLICIES)}, got {missing_policy!r}")
    labels = inputs.labels.drop_duplicates("case_id")
    slide_cases = set(inputs.slides["case_id"])
    omics = inputs.omics.reindex(columns=columns)
    everyone = list(dict.fromkeys([*labels["case_id"], *inputs.unlabelled, *slide_cases, *omics.index]))
    labelled = set(labels["case_id"])
    absent_omic = _absent_omics(omics, [c for c in everyone if c in labelled and c in slide_cases])
    lacking = {
        "no_label": [case for case in everyone if case not in labelled],
        "no_slides": [case for case in everyone if case in labelled and case not in slide_cases],
        "no_genomics": list(absent_omic),
    }
    for reason, cases in lacking.items():
        if not cases:
            continue
        role = {"no_label": "labels", "no_slides": "slides"}.get(reason) or absent_omic[cases[0]]
        source = inputs.sources.get(role, inputs.sources["labels"])
        if missing_policy == "fail":
            raise InputError(
                f"{source}: patients {cases[:3]} ({len(cases)} in all) {DROP_REASONS[reason]}; "
                "complete the inputs or use missing policy 'drop'"
            )
        log.warning(
            "%s: %d patients %s and are dropped (e.g. %s)",
            source,
            len(cases),
            DROP_REASONS[reason],
            ", ".join(cases[:3]),
        )
    gone = {case for cases in lacking.values() for case in cases}
    kept = labels[~labels["case_id"].isin(gone)].reset_index(drop=True)
    if kept.empty:
        raise InputError(
            f"{inputs.sources['labels']}: no patient has a label, a slide and every omic; check "
            "that the inputs describe the same patients (12-character TCGA ids)"
        )
    kept_omics = pd.DataFrame(
        omics.loc[kept["case_id"]].to_numpy(dtype=np.float64),
        index=pd.Index(kept["case_id"], name="case_id"),
        columns=columns,
    )
    if nan_policy == "fail":
        _fail_on_nan(kept_omics, inputs)
    return _patient_table(kept, inputs.slides), kept_omics.reset_index(), lacking


def _absent_omics(omics: pd.DataFrame, cases: list[str]) -> dict[str, str]:
    """Patient → suffix of the first omic whose columns are all empty for it (patients lacking none left out)."""
    present = omics.reindex(index=cases)
    absent: dict[str, str] = {}
    for suffix in OMIC_SUFFIXES:
        block = [column for column in present.columns if column.endswith(suffix)]
        if block:
            for case in present.index[present[block].isna().all(axis=1).to_numpy()]:
                absent.setdefault(case, suffix)
    return {case: absent[case] for case in cases if case in absent}


def _fail_on_nan(omics: pd.DataFrame, inputs: CohortInputs) -> None:
    empty = omics.isna().to_numpy()
    if not empty.any():
        return
    row, column = (int(index[0]) for index in np.nonzero(empty))
    name = omics.columns[column]
    suffix = next(s for s in OMIC_SUFFIXES if name.endswith(s))
    raise InputError(
        f"{inputs.sources.get(suffix)}: gene '{name.removesuffix(suffix)}' ({name}) is empty for patient "
        f"{omics.index[row]} ({int(empty.sum())} empty cells); fill them or use nan policy 'impute' "
        "(training-fold median)"
    )


def _patient_table(labels: pd.DataFrame, slides: pd.DataFrame) -> pd.DataFrame:
    keys = slides.assign(key=slides["slide_id"].map(slide_key)).groupby("case_id", sort=False)["key"]
    patients = labels.copy()
    patients.insert(1, "slide_ids", patients["case_id"].map(keys.agg(";".join)))
    patients["event"] = 1 - patients["censorship"]
    extras = [column for column in labels.columns if column not in ("case_id", "survival_months", "censorship")]
    patients = patients[["case_id", "slide_ids", "survival_months", "censorship", "event", *extras]]
    if "site" not in patients.columns:
        sites = patients["case_id"].map(tissue_source_site)
        if sites.notna().all():
            patients["site"] = sites
    return patients
