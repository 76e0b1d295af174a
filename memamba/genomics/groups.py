"""Gene groups: read group definitions and match them to a table's omic columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from memamba.errors import InputError

OMIC_SUFFIXES: tuple[str, ...] = ("_rnaseq", "_cnv", "_mut")
"""Omic column suffixes, in the order their columns appear inside a group."""

OMICS: tuple[str, ...] = tuple(suffix[1:] for suffix in OMIC_SUFFIXES)
"""Omic names (rnaseq, cnv, mut) accepted by `match_groups(omics=…)`."""

BUILTIN_GROUPS: dict[str, str] = {
    "mcat6": "MCAT's six functional groups (Tumor Suppressor Genes … Cytokines and Growth Factors)",
    "combine": "SurvPath's 331 pathways: 281 Reactome pathways and the 50 MSigDB Hallmarks",
    "hallmarks": "the 50 MSigDB Hallmark pathways of SurvPath",
    "reactome": "the 281 Reactome pathways of SurvPath",
}
"""Names accepted by `load_gene_groups`; their files are shipped in `memamba/data`."""

_BUILTIN_FILES: dict[str, str] = {
    "mcat6": "mcat_signatures.csv",
    "combine": "survpath_combine_signatures.csv",
    "hallmarks": "survpath_combine_signatures.csv",
    "reactome": "survpath_combine_signatures.csv",
}
_HALLMARK_PREFIX = "HALLMARK_"


def load_gene_groups(spec: str | Path) -> dict[str, list[str]]:
    """Read gene groups: a builtin name (`BUILTIN_GROUPS`), an MSigDB .gmt file or a CSV path.

    CSV layouts: one column per group (the header holds the group names, gene symbols down the rows,
    blank cells where a group is shorter; MCAT's and SurvPath's signatures files), or a membership
    matrix whose first column is `gene` and whose other columns hold 0/1 per group (SurvPath's
    pathway_compositions files). GMT: one group per line, `name<TAB>description<TAB>gene<TAB>gene…`.
    Group order and gene order are kept; repeated genes are dropped after their first occurrence; a
    group without genes raises InputError.
    """
    if str(spec) in BUILTIN_GROUPS:
        name = _BUILTIN_FILES[str(spec)]
        text = resources.files("memamba").joinpath("data", name).read_text(encoding="utf-8")
        groups = _parse_groups(text, f"memamba/data/{name}")
        if spec == "hallmarks":
            return {key: genes for key, genes in groups.items() if key.startswith(_HALLMARK_PREFIX)}
        if spec == "reactome":
            return {key: genes for key, genes in groups.items() if not key.startswith(_HALLMARK_PREFIX)}
        return groups
    path = Path(spec)
    if not path.is_file():
        raise InputError(
            f"{path}: gene groups file not found; pass one of {sorted(BUILTIN_GROUPS)}, a .gmt or a CSV path"
        )
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".gmt":
        return _parse_gmt(text, str(path))
    return _parse_groups(text, str(path))


def _parse_gmt(text: str, source: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.rstrip("\n").split("\t")]
        name = fields[0]
        if not name or len(fields) < 2:
            raise InputError(f"{source}: line {number} is not 'name<TAB>description<TAB>genes…'; fix the GMT file")
        if name in groups:
            raise InputError(f"{source}: group '{name}' appears twice (line {number}); rename or merge it")
        groups[name] = list(dict.fromkeys(gene for gene in fields[2:] if gene))
    return _checked(groups, source)


def _parse_groups(text: str, source: str) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(name.strip() for name in rows[0]):
        raise InputError(f"{source}: no header row; the first row must hold the group names")
    names = [name.strip() for name in rows[0]]
    if names[0].lower() in {"", "gene"} and _is_membership(rows[1:]):
        return _parse_membership(rows, source)
    if "" in names:
        raise InputError(f"{source}: header column {names.index('') + 1} has no group name; name it")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{source}: group name(s) {repeated} appear twice in the header; rename them")
    groups: dict[str, list[str]] = {name: [] for name in names}
    for row in rows[1:]:
        for name, cell in zip(names, row, strict=False):
            gene = cell.strip()
            if gene and gene not in groups[name]:
                groups[name].append(gene)
    return _checked(groups, source)


def _is_membership(rows: list[list[str]]) -> bool:
    return bool(rows) and all(cell.strip() in {"0", "1", "0.0", "1.0", ""} for row in rows for cell in row[1:])


def _parse_membership(rows: list[list[str]], source: str) -> dict[str, list[str]]:
    names = [name.strip() for name in rows[0][1:]]
    groups: dict[str, list[str]] = {name: [] for name in names}
    for row in rows[1:]:
        gene = row[0].strip()
        for name, cell in zip(names, row[1:], strict=False):
            if gene and cell.strip() in {"1", "1.0"} and gene not in groups[name]:
                groups[name].append(gene)
    return _checked(groups, source)


def _checked(groups: dict[str, list[str]], source: str) -> dict[str, list[str]]:
    if not groups:
        raise InputError(f"{source}: no gene group; add at least one")
    empty = [name for name, genes in groups.items() if not genes]
    if empty:
        raise InputError(f"{source}: group(s) {empty[:5]} list no gene; fill or remove those groups")
    return groups


def match_groups(
    groups: Mapping[str, list[str]],
    columns: Iterable[str],
    *,
    source: str = "the table",
    omics: Iterable[str] = OMICS,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Find each group's omic columns in a table.

    For each group the columns `{gene}_rnaseq`, then `{gene}_cnv`, then `{gene}_mut` present in
    `columns` (genes in group order within each omic), restricted to the omics named in `omics`.
    Returns (group -> columns, group -> genes with none of those columns). A group left with no
    column raises InputError naming it and `source`.
    """
    suffixes = omic_suffixes(omics)
    present = set(columns)
    matched: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for name, genes in groups.items():
        matched[name] = [f"{gene}{suffix}" for suffix in suffixes for gene in genes if f"{gene}{suffix}" in present]
        missing[name] = [gene for gene in genes if not any(f"{gene}{suffix}" in present for suffix in suffixes)]
        if not matched[name]:
            raise InputError(
                f"{source}: no column of gene group '{name}' ({len(genes)} genes, e.g. {genes[:3]}) "
                f"matches the table's {'/'.join(suffixes)} columns; use a table with those genes "
                "or drop the group from the groups file"
            )
    return matched, missing


def omic_suffixes(omics: Iterable[str]) -> tuple[str, ...]:
    """Column suffixes of the named omics, in `OMIC_SUFFIXES` order; InputError for an unknown name."""
    wanted = list(omics)
    unknown = [omic for omic in wanted if omic not in OMICS]
    if unknown or not wanted:
        raise InputError(f"omics must be a non-empty subset of {list(OMICS)}, got {wanted}")
    return tuple(f"_{omic}" for omic in OMICS if omic in wanted)
