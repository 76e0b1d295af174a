"""MCAT-format genomics table of the demo cohort: three gene groups carry the latent risk, three are noise."""

from __future__ import annotations

import os
from collections import Counter
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from memamba.demo.plan import OMICS_STREAM, DemoPatient, demo_rng
from memamba.errors import InputError
from memamba.io import atomic_output

if TYPE_CHECKING:
    import pandas as pd

SIGNAL_GROUPS: tuple[str, ...] = ("Tumor Suppressor Genes", "Oncogenes", "Protein Kinases")
"""MCAT groups whose omic values depend on the latent risk; the other groups are independent noise."""
ONCOTREE_CODE = "DEMO"
CNV_THRESHOLDS = np.array([-1.6, -0.6, 0.6, 1.6])
"""Cut points of a noisy standard-normal driver into copy-number calls -2, -1, 0, 1, 2."""
CLINICAL_COLUMNS: tuple[str, ...] = (
    "case_id", "slide_id", "site", "is_female", "oncotree_code", "age", "survival_months", "censorship", "train",
)


def load_signature_groups() -> dict[str, list[str]]:
    """MCAT's six gene groups from the package file data/mcat_signatures.csv, in file order, genes unique."""
    import pandas as pd

    with resources.files("memamba").joinpath("data/mcat_signatures.csv").open("r") as handle:
        table = pd.read_csv(handle, dtype=str)
    return {str(group): list(dict.fromkeys(table[group].dropna().str.strip())) for group in table.columns}


def select_demo_genes(groups: dict[str, list[str]], genes_per_group: int) -> dict[str, list[str]]:
    """Pick `genes_per_group` genes per group, evenly spaced in alphabetical order, among genes that belong
    to that group only, so every omic column (and so its signal or noise) belongs to exactly one group.
    """
    membership = Counter(gene for genes in groups.values() for gene in genes)
    chosen = {}
    for group, genes in groups.items():
        exclusive = sorted(gene for gene in genes if membership[gene] == 1)
        if not 1 <= genes_per_group <= len(exclusive):
            raise InputError(
                f"genes_per_group={genes_per_group} does not fit group {group!r} "
                f"({len(exclusive)} genes of its own); pass a value between 1 and {len(exclusive)}"
            )
        picks = np.linspace(0, len(exclusive) - 1, genes_per_group).round().astype(int)
        chosen[group] = [exclusive[i] for i in picks]
    return chosen


def demo_genes(genes_per_group: int = 24) -> dict[str, list[str]]:
    """The demo's genes per MCAT group: `select_demo_genes` of the packaged signatures (InputError if too many)."""
    return select_demo_genes(load_signature_groups(), genes_per_group)


def draw_group_omics(driver: np.ndarray, genes: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Omic columns of `genes` from a driver [N, G] (latent risk per gene, or independent noise).

    rnaseq: (loading * driver + 0.8 * noise) scaled to unit variance, loading = ±U(0.6, 1.2);
    cnv: integer -2..2 cut of (sign * driver + 0.8 * noise); mut: Bernoulli(sigmoid(driver - 2)), 0/1.
    """
    n_genes = len(genes)
    sign = rng.choice([-1.0, 1.0], n_genes)
    loading = sign * rng.uniform(0.6, 1.2, n_genes)
    rnaseq = (loading * driver + 0.8 * rng.standard_normal(driver.shape)) / np.sqrt(loading**2 + 0.64)
    cnv = np.digitize(sign * driver + 0.8 * rng.standard_normal(driver.shape), CNV_THRESHOLDS) - 2
    mut = (rng.random(driver.shape) < 1.0 / (1.0 + np.exp(2.0 - driver))).astype(np.int64)
    columns = {}
    for index, gene in enumerate(genes):
        columns[f"{gene}_rnaseq"] = np.round(rnaseq[:, index], 4)
        columns[f"{gene}_cnv"] = cnv[:, index].astype(np.int64)
        columns[f"{gene}_mut"] = mut[:, index]
    return columns


def draw_omics(latent_risk: np.ndarray, genes_by_group: dict[str, list[str]], rng: np.random.Generator) -> pd.DataFrame:
    """Patient omics [N, 3 * genes] (columns sorted by name, like MCAT): SIGNAL_GROUPS driven by the latent
    risk z [N], the other groups by independent standard-normal drivers with the same marginals.
    """
    import pandas as pd

    z = np.asarray(latent_risk, dtype=np.float64)
    columns: dict[str, np.ndarray] = {}
    for group, genes in genes_by_group.items():
        if group in SIGNAL_GROUPS:
            driver = np.repeat(z[:, None], len(genes), axis=1)
        else:
            driver = rng.standard_normal((z.size, len(genes)))
        columns.update(draw_group_omics(driver, genes, rng))
    return pd.DataFrame({name: columns[name] for name in sorted(columns)})


def genomics_table(patients: list[DemoPatient], seed: int, genes_by_group: dict[str, list[str]]) -> pd.DataFrame:
    """MCAT-style table, one row per slide: CLINICAL_COLUMNS then `{GENE}_rnaseq/_cnv/_mut` columns
    for the genes of `genes_by_group` (see `demo_genes`).

    slide_id carries the ".svs" suffix (MCAT style); a patient's slides share every other value;
    survival_months in months, censorship 1 = censored, train = 1.0.
    """
    import pandas as pd

    risk = np.array([p.latent_risk for p in patients])
    omics = draw_omics(risk, genes_by_group, demo_rng(seed, OMICS_STREAM))
    rows = [(index, slide_id) for index, patient in enumerate(patients) for slide_id in patient.slide_ids]
    clinical = pd.DataFrame(
        {
            "case_id": [patients[i].case_id for i, _ in rows],
            "slide_id": [f"{slide_id}.svs" for _, slide_id in rows],
            "site": [patients[i].site for i, _ in rows],
            "is_female": [patients[i].is_female for i, _ in rows],
            "oncotree_code": ONCOTREE_CODE,
            "age": [patients[i].age for i, _ in rows],
            "survival_months": [patients[i].survival_months for i, _ in rows],
            "censorship": [patients[i].censorship for i, _ in rows],
            "train": 1.0,
        }
    )
    per_slide_omics = omics.iloc[[i for i, _ in rows]].reset_index(drop=True)
    return pd.concat([clinical, per_slide_omics], axis=1)


def write_genomics_csv(
    path: str | os.PathLike[str], patients: list[DemoPatient], seed: int, genes_by_group: dict[str, list[str]]
) -> None:
    """Write `genomics_table` as CSV with an unnamed leading index column (MCAT's layout)."""
    table = genomics_table(patients, seed, genes_by_group)
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=True)
