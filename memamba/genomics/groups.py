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

BUILTIN_GROUPS: dict[str, str] = {"mcat6": "mcat_signatures.csv"}
"""Names accepted by `load_gene_groups`, mapped to files shipped in `memamba/data`."""


def load_gene_groups(spec: str | Path) -> dict[str, list[str]]:
    """Read gene groups: a builtin name ("mcat6") or a CSV path.

    CSV layout: one column per group (the header holds the group names), gene symbols down the rows,
    blank cells where a group is shorter. Group order and gene order are kept; repeated genes are
    dropped after their first occurrence.
    """
    if str(spec) in BUILTIN_GROUPS:
        name = BUILTIN_GROUPS[str(spec)]
        text = resources.files("memamba").joinpath("data", name).read_text(encoding="utf-8")
        return _parse_groups(text, f"memamba/data/{name}")
    path = Path(spec)
    if not path.is_file():
        raise InputError(
            f"{path}: gene groups file not found; pass one of {sorted(BUILTIN_GROUPS)} or a CSV path"
        )
    return _parse_groups(path.read_text(encoding="utf-8-sig"), str(path))


def _parse_groups(text: str, source: str) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(name.strip() for name in rows[0]):
        raise InputError(f"{source}: no header row; the first row must hold the group names")
    names = [name.strip() for name in rows[0]]
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
    empty = [name for name, genes in groups.items() if not genes]
    if empty:
        raise InputError(f"{source}: group(s) {empty} list no gene; fill or remove those columns")
    return groups


def match_groups(
    groups: Mapping[str, list[str]], columns: Iterable[str], *, source: str = "the table"
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Find each group's omic columns in a table.

    For each group the columns `{gene}_rnaseq`, then `{gene}_cnv`, then `{gene}_mut` present in
    `columns` (genes in group order within each omic). Returns (group -> columns, group -> genes with
    none of those columns). A group left with no column raises InputError naming it and `source`.
    """
    present = set(columns)
    matched: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for name, genes in groups.items():
        matched[name] = [f"{gene}{suffix}" for suffix in OMIC_SUFFIXES for gene in genes
                         if f"{gene}{suffix}" in present]
        missing[name] = [gene for gene in genes
                         if not any(f"{gene}{suffix}" in present for suffix in OMIC_SUFFIXES)]
        if not matched[name]:
            raise InputError(
                f"{source}: no column of gene group '{name}' ({len(genes)} genes, e.g. {genes[:3]}) "
                f"matches the table's {'/'.join(OMIC_SUFFIXES)} columns; use a table with those genes "
                "or drop the group from the groups file"
            )
    return matched, missing
