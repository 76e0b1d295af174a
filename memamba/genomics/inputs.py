"""Gather a cohort's inputs (labels, slides, omics) from an MCAT table and/or raw cBioPortal/GDC files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from memamba.errors import InputError
from memamba.genomics.clinical import read_clinical
from memamba.genomics.matrices import read_gene_matrix, transform_expression
from memamba.genomics.mutations import read_mutations
from memamba.genomics.patients import patient_labels, patient_omics
from memamba.genomics.slides import read_slide_list
from memamba.genomics.tables import omic_columns, read_mcat_table


@dataclass
class CohortInputs:
    """What the cohort is built from, before patients are matched across sources.

    labels: one row per labelled patient (case_id, survival_months, censorship, optional extras).
    slides: one row per slide (case_id, slide_id). omics: float64 [patients, columns] indexed by case_id,
    columns `{gene}_{omic}`, NaN where a value is missing. unlabelled: patients the label source lists
    without a label for the endpoint. sources: role ("labels", "slides", "_rnaseq", "_cnv", "_mut") → file.
    """

    labels: pd.DataFrame
    slides: pd.DataFrame
    omics: pd.DataFrame
    unlabelled: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def gather_inputs(
    *,
    table: str | Path | None = None,
    clinical: str | Path | None = None,
    slides: str | Path | None = None,
    expression: str | Path | None = None,
    cnv: str | Path | None = None,
    mutations: str | Path | None = None,
    endpoint: str = "os",
    nan_policy: str = "fail",
    expression_transform: str = "none",
) -> CohortInputs:
    """Read every given source.

    Labels come from `table` (MCAT-style, rows = slides) or `clinical` (cBioPortal patient table), one of
    the two. Slides come from `slides` (folder or CSV, `read_slide_list`) or else from the table's
    slide_id column. Omics come from the raw matrices when any of expression/cnv/mutations is given
    (columns `{gene}_rnaseq`, `{gene}_cnv`, `{gene}_mut`), else from the table's omic columns.
    expression_transform ("none" or "log2p1", `transform_expression`) applies to `expression` only.
    """
    if (table is None) == (clinical is None):
        raise InputError(
            "give the labels either with --table (MCAT-style table) or with --clinical "
            "(clinical patient table), not both and not neither"
        )
    matrices = {"_rnaseq": expression, "_cnv": cnv, "_mut": mutations}
    if expression_transform != "none" and expression is None:
        raise InputError(f"expression transform {expression_transform!r} applies to --expression, which is not given")
    if table is None and slides is None:
        raise InputError(f"{clinical}: a clinical table names no slide; pass the slides with --slides DIR or CSV")
    if table is None and not any(matrices.values()):
        raise InputError(f"{clinical}: a clinical table holds no omics; pass --expression, --cnv or --mutations")
    sources: dict[str, str] = {}
    slide_table = None
    if table is not None:
        slide_table = read_mcat_table(table, nan_policy=nan_policy, endpoint=endpoint)
        labels, unlabelled = patient_labels(slide_table), []
        sources["labels"] = sources["slides"] = str(table)
    else:
        labels, unlabelled = read_clinical(clinical, endpoint)
        sources["labels"] = str(clinical)
    if slides is not None:
        slide_list = read_slide_list(slides)
        sources["slides"] = str(slides)
    else:
        slide_list = slide_table[["case_id", "slide_id"]].reset_index(drop=True)
    if any(matrices.values()):
        omics = _raw_omics(matrices, sources, expression_transform)
    else:
        omics = patient_omics(slide_table, omic_columns(slide_table.columns), table)
        sources.update({suffix: str(table) for suffix in matrices})
    return CohortInputs(labels=labels, slides=slide_list, omics=omics, unlabelled=unlabelled, sources=sources)


def _raw_omics(
    matrices: dict[str, str | Path | None], sources: dict[str, str], expression_transform: str
) -> pd.DataFrame:
    parts = []
    for suffix, path in matrices.items():
        if path is None:
            continue
        if suffix == "_mut":
            matrix = read_mutations(path)
        else:
            what = "expression matrix" if suffix == "_rnaseq" else "copy-number matrix"
            option = "--expression" if suffix == "_rnaseq" else "--cnv"
            matrix = read_gene_matrix(path, what=what, option=option)
            if suffix == "_rnaseq":
                matrix = transform_expression(matrix, expression_transform, path)
        parts.append(matrix.add_suffix(suffix))
        sources[suffix] = str(path)
    omics = pd.concat(parts, axis=1, join="outer")
    omics.index.name = "case_id"
    return omics
