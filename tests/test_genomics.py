"""Tests of the genomics stage: gene groups, MCAT table validation and the cohort folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memamba.errors import InputError
from memamba.genomics.build import build_cohort
from memamba.genomics.groups import load_gene_groups, match_groups
from memamba.genomics.tables import read_mcat_table

DATA = Path(__file__).parent / "data" / "tcga" / "blca"
BLCA_TABLE = DATA / "mcat" / "tcga_blca_all_clean.csv"
BLCA_SPLITS = DATA / "splits" / "5foldcv"
BRCA = Path(__file__).parent / "data" / "tcga" / "brca"
BRCA_TABLE = BRCA / "porpoise_mutsig" / "tcga_brca_subset.csv"
BRCA_SPLITS = BRCA / "splits" / "5foldcv"
BRCA_SURVPATH = BRCA / "survpath" / "tcga_brca.csv"
MCAT6 = [
    "Tumor Suppressor Genes", "Oncogenes", "Protein Kinases", "Cell Differentiation Markers",
    "Transcription Factors", "Cytokines and Growth Factors",
]
GROUPS = {"first": ["G1", "G2", "G3"], "second": ["G4", "G5"]}


@pytest.fixture(scope="module")
def blca_table() -> pd.DataFrame:
    return read_mcat_table(BLCA_TABLE)


@pytest.fixture(scope="module")
def blca_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cohorts") / "blca"
    summary = build_cohort(BLCA_TABLE, "mcat6", out, splits_dir=BLCA_SPLITS)
    return out, summary


def small_table(rows: int = 12) -> pd.DataFrame:
    """A valid slide table: `rows` patients with one slide each (the first patient has two)."""
    rng = np.random.default_rng(0)
    cases = [f"TCGA-AA-{i:04d}" for i in range(rows)]
    table = pd.DataFrame({
        "case_id": [cases[0], *cases],
        "slide_id": [f"TCGA-AA-{i:04d}-01Z-00-DX{j}.AB.svs" for i, j in [(0, 2)] + [(i, 1) for i in range(rows)]],
        "survival_months": [5.0, *rng.uniform(1, 60, rows).round(2)],
        "censorship": [0, *([0, 1] * rows)[:rows]],
    })
    table.loc[0, "survival_months"] = table.loc[1, "survival_months"]
    table.loc[0, "censorship"] = table.loc[1, "censorship"]
    for gene in ("G1", "G2", "G3", "G4", "G5"):
        table[f"{gene}_rnaseq"] = rng.normal(size=len(table)).round(3)
    table["G1_cnv"] = rng.integers(-2, 3, len(table))
    table.loc[0, table.columns[4:]] = table.loc[1, table.columns[4:]]
    return table


def write_table(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path)
    return path


# --- gene groups ---------------------------------------------------------------------------------------


def test_mcat6_gives_six_groups_in_file_order() -> None:
    groups = load_gene_groups("mcat6")
    assert list(groups) == MCAT6
    assert groups["Tumor Suppressor Genes"][:3] == ["AMER1", "APC", "ASXL1"]


def test_groups_csv_keeps_order_and_skips_blanks_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("b,a\nX,P\nY,\nX,\n")
    assert load_gene_groups(path) == {"b": ["X", "Y"], "a": ["P"]}


def test_missing_groups_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.csv"):
        load_gene_groups(tmp_path / "nowhere.csv")


def test_survpath_hallmarks_and_reactome_split_the_combined_pathways() -> None:
    combine, hallmarks, reactome = (load_gene_groups(name) for name in ("combine", "hallmarks", "reactome"))
    assert (len(combine), len(hallmarks), len(reactome)) == (331, 50, 281)
    assert {**hallmarks, **reactome} == combine
    assert all(name.startswith("HALLMARK_") for name in hallmarks)
    assert len(hallmarks["HALLMARK_HYPOXIA"]) == 190


def test_gmt_file_gives_one_group_per_line(tmp_path: Path) -> None:
    path = tmp_path / "sets.gmt"
    path.write_text("HALLMARK_X\thttp://www.gsea-msigdb.org\tTP53\tRB1\tTP53\n\nSET_Y\tna\tEGFR\n")
    assert load_gene_groups(path) == {"HALLMARK_X": ["TP53", "RB1"], "SET_Y": ["EGFR"]}


def test_gmt_group_without_genes_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "sets.gmt"
    path.write_text("A\tna\tTP53\nB\tna\n")
    with pytest.raises(InputError, match=r"sets.gmt: group\(s\) \['B'\] list no gene"):
        load_gene_groups(path)


def test_membership_matrix_as_survpath_compositions_reads_like_gene_lists(tmp_path: Path) -> None:
    path = tmp_path / "comps.csv"
    path.write_text(",P1,P2\nTP53,1,0\nRB1,1,1\nEGFR,0,1\n")
    assert load_gene_groups(path) == {"P1": ["TP53", "RB1"], "P2": ["RB1", "EGFR"]}


def test_omics_filter_keeps_only_the_named_omics() -> None:
    matched, _ = match_groups({"g": ["A"]}, ["A_rnaseq", "A_cnv", "A_mut"], omics=["mut", "rnaseq"])
    assert matched == {"g": ["A_rnaseq", "A_mut"]}


def test_unknown_omic_name_raises() -> None:
    with pytest.raises(InputError, match="omics must be a non-empty subset"):
        match_groups({"g": ["A"]}, ["A_rnaseq"], omics=["rna"])


def test_match_orders_rnaseq_then_cnv_then_mut_with_genes_in_group_order() -> None:
    columns = ["B_cnv", "A_rnaseq", "B_rnaseq", "A_mut", "A_cnv", "other"]
    matched, missing = match_groups({"g": ["B", "A", "C"]}, columns)
    assert matched == {"g": ["B_rnaseq", "A_rnaseq", "B_cnv", "A_cnv", "A_mut"]}
    assert missing == {"g": ["C"]}


def test_match_on_blca_finds_rnaseq_and_cnv_and_reports_missing_genes(blca_table: pd.DataFrame) -> None:
    matched, missing = match_groups(load_gene_groups("mcat6"), blca_table.columns)
    suppressors = matched["Tumor Suppressor Genes"]
    assert suppressors[0].endswith("_rnaseq") and suppressors[-1].endswith("_cnv")
    assert missing["Tumor Suppressor Genes"] == []
    assert len(missing["Transcription Factors"]) > 0
    gene = missing["Transcription Factors"][0]
    assert not any(column.startswith(f"{gene}_") for column in blca_table.columns)


def test_group_without_columns_raises_naming_group_and_table() -> None:
    with pytest.raises(InputError, match=r"table.csv.*'empty'"):
        match_groups({"ok": ["A"], "empty": ["Z"]}, ["A_rnaseq"], source="table.csv")


# --- table validation ----------------------------------------------------------------------------------


def test_blca_table_drops_index_column_and_types_labels(blca_table: pd.DataFrame) -> None:
    assert blca_table.columns[0] == "case_id"
    assert len(blca_table) == 437
    assert blca_table["censorship"].dtype == np.int64
    assert blca_table["survival_months"].dtype == np.float64


def break_missing_column(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns="censorship")


def break_negative_survival(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "survival_months"] = -1.0
    return table


def break_censorship(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "censorship"] = 2
    return table


def break_duplicate_labels(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[0, "survival_months"] = 99.0
    return table


def break_omic_nan(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[3, "G2_rnaseq"] = np.nan
    return table


@pytest.mark.parametrize(
    ("breaker", "column", "line"),
    [
        (break_missing_column, "censorship", None),
        (break_negative_survival, "survival_months", "line 5"),
        (break_censorship, "censorship", "line 5"),
        (break_duplicate_labels, "survival_months", "lines 2 (TCGA-AA-0000), 3"),
        (break_omic_nan, "G2_rnaseq", "line 5"),
    ],
    ids=["missing-column", "negative-survival", "censorship-2", "conflicting-duplicates", "nan-fail"],
)
def test_bad_table_raises_naming_file_column_row_and_writes_nothing(
    tmp_path: Path, breaker, column: str, line: str | None
) -> None:
    path = write_table(breaker(small_table()), tmp_path / "bad.csv")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "cohort"
    with pytest.raises(InputError) as caught:
        build_cohort(path, GROUPS, out, n_folds=3)
    message = str(caught.value)
    assert str(path) in message and column in message and "\n" not in message
    if line is not None:
        assert line in message
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_impute_policy_accepts_empty_omic_cells_and_keeps_them_raw(tmp_path: Path) -> None:
    path = write_table(break_omic_nan(small_table()), tmp_path / "nan.csv")
    table = read_mcat_table(path, nan_policy="impute")
    assert np.isnan(table.loc[3, "G2_rnaseq"])


def test_text_in_omic_column_raises_naming_it(tmp_path: Path) -> None:
    table = small_table()
    table["G3_rnaseq"] = table["G3_rnaseq"].astype(object)
    table.loc[6, "G3_rnaseq"] = "high"
    path = write_table(table, tmp_path / "text.csv")
    with pytest.raises(InputError, match=r"'G3_rnaseq' is not a number at CSV line 8"):
        read_mcat_table(path)


def test_slides_of_one_patient_with_different_omics_raise(tmp_path: Path) -> None:
    table = small_table()
    table.loc[0, "G4_rnaseq"] = 42.0
    path = write_table(table, tmp_path / "omics.csv")
    with pytest.raises(InputError, match=r"'G4_rnaseq' differs between slides of patient TCGA-AA-0000"):
        build_cohort(path, GROUPS, tmp_path / "cohort", n_folds=3)


# --- cohort folder ------------------------------------------------------------------------------------


def test_blca_cohort_has_one_row_per_patient_with_all_slide_keys(blca_cohort, blca_table) -> None:
    out, _ = blca_cohort
    patients = pd.read_parquet(out / "patients.parquet")
    assert len(patients) == blca_table["case_id"].nunique() == 373
    keys = [key for joined in patients["slide_ids"] for key in joined.split(";")]
    assert len(keys) == 437 and not any(key.endswith(".svs") for key in keys)
    assert (patients["event"] == 1 - patients["censorship"]).all()
    assert {"oncotree_code", "site"} <= set(patients.columns)


def test_blca_cohort_splits_reproduce_the_given_files(blca_cohort) -> None:
    out, _ = blca_cohort
    for fold in range(5):
        written = (out / "splits" / f"splits_{fold}.csv").read_bytes()
        assert written == (BLCA_SPLITS / f"splits_{fold}.csv").read_bytes()


def test_blca_cohort_groups_and_omics_agree(blca_cohort) -> None:
    out, summary = blca_cohort
    groups = json.loads((out / "groups.json").read_text())
    omics = pd.read_parquet(out / "omics.parquet")
    assert list(groups["groups"]) == MCAT6
    used = {column for columns in groups["groups"].values() for column in columns}
    assert set(omics.columns) == used | {"case_id"}
    assert summary["missing_genes"] == {name: len(genes) for name, genes in groups["missing_genes"].items()}


def test_blca_summary_counts_patients_slides_and_events(blca_cohort) -> None:
    out, summary = blca_cohort
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (summary["patients"], summary["slides"], summary["n_folds"]) == (373, 437, 5)
    assert summary["events"] == round(373 * (1 - summary["censoring_rate"]))
    assert summary["split_source"] == "files"


def test_build_without_splits_writes_stratified_folds(tmp_path: Path) -> None:
    path = write_table(small_table(), tmp_path / "t.csv")
    summary = build_cohort(path, GROUPS, tmp_path / "cohort", n_folds=3, seed=1)
    held_out = [pd.read_csv(tmp_path / "cohort" / "splits" / f"splits_{k}.csv", index_col=0)["val"]
                for k in range(3)]
    assert summary["split_source"] == "stratified"
    assert sorted(pd.concat(held_out).dropna()) == sorted(small_table()["case_id"].unique())


def test_rebuild_replaces_previous_folder_contents(tmp_path: Path) -> None:
    path = write_table(small_table(), tmp_path / "t.csv")
    out = tmp_path / "cohort"
    build_cohort(path, GROUPS, out, n_folds=4)
    build_cohort(path, GROUPS, out, n_folds=3)
    assert sorted(p.name for p in (out / "splits").iterdir()) == [f"splits_{k}.csv" for k in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "t.csv"]


def test_failed_rebuild_leaves_previous_folder_untouched(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    build_cohort(write_table(small_table(), tmp_path / "t.csv"), GROUPS, out, n_folds=3)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = write_table(break_censorship(small_table()), tmp_path / "bad.csv")
    with pytest.raises(InputError):
        build_cohort(bad, GROUPS, out, n_folds=3)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_failure_while_writing_leaves_no_folder_and_no_staging_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memamba.genomics.build as build

    def broken_write_splits(splits, folder):
        raise OSError("disk full")

    monkeypatch.setattr(build, "write_splits", broken_write_splits)
    path = write_table(small_table(), tmp_path / "t.csv")
    with pytest.raises(OSError, match="disk full"):
        build.build_cohort(path, GROUPS, tmp_path / "cohort", n_folds=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_split_id_outside_cohort_raises_naming_file_and_id(tmp_path: Path) -> None:
    cases = list(small_table()["case_id"].unique())
    splits = tmp_path / "splits"
    splits.mkdir()
    for fold in range(3):
        val = cases[fold * 4:(fold + 1) * 4]
        train = [case for case in cases if case not in val]
        if fold == 1:
            val[-1] = "TCGA-XX-9999"
        pd.DataFrame({"train": pd.Series(train), "val": pd.Series(val)}).to_csv(splits / f"splits_{fold}.csv")
    path = write_table(small_table(), tmp_path / "t.csv")
    with pytest.raises(InputError, match=r"splits_1.csv: case id 'TCGA-XX-9999' \(column val, CSV line 5\)"):
        build_cohort(path, GROUPS, tmp_path / "cohort", splits_dir=splits)


# --- BRCA: PORPOISE table with mutations, MCAT splits, SurvPath endpoints --------------------------------


@pytest.fixture(scope="module")
def brca_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cohorts") / "brca"
    return out, build_cohort(BRCA_TABLE, "mcat6", out, splits_dir=BRCA_SPLITS)


def test_brca_cohort_uses_rnaseq_cnv_and_mut_columns_and_mcat_splits(brca_cohort) -> None:
    out, summary = brca_cohort
    assert (summary["patients"], summary["slides"], summary["n_folds"]) == (956, 1022, 5)
    assert summary["held_out_per_fold"] == [192, 191, 191, 191, 191]
    groups = json.loads((out / "groups.json").read_text())["groups"]
    assert {column.rsplit("_", 1)[1] for columns in groups.values() for column in columns} == {"rnaseq", "cnv", "mut"}
    assert "TP53_mut" in groups["Tumor Suppressor Genes"]
    for fold in range(5):
        assert (out / "splits" / f"splits_{fold}.csv").read_bytes() == (BRCA_SPLITS / f"splits_{fold}.csv").read_bytes()


def test_brca_mutation_columns_are_binary(brca_cohort) -> None:
    omics = pd.read_parquet(brca_cohort[0] / "omics.parquet")
    mutations = omics[[column for column in omics.columns if column.endswith("_mut")]]
    assert set(np.unique(mutations.to_numpy())) == {0.0, 1.0}


def test_brca_summary_reports_censoring_rate_and_missing_genes(brca_cohort) -> None:
    _, summary = brca_cohort
    assert summary["censoring_rate"] == pytest.approx(1 - 130 / 956)
    assert summary["endpoint"] == "os" and summary["dropped"] == {"no_label": [], "no_slides": [], "no_genomics": []}
    assert all(count > 0 for count in summary["missing_genes"].values())


def test_brca_survpath_metadata_gives_dss_and_pfi_labels(tmp_path: Path) -> None:
    """SurvPath's metadata carries the labels; the omics come from the PORPOISE table turned into a matrix."""
    table = read_mcat_table(BRCA_TABLE).drop_duplicates("case_id").set_index("case_id")
    expression = table[[column for column in table.columns if column.endswith("_rnaseq")]]
    matrix = tmp_path / "rna.csv"
    expression.rename(columns=lambda column: column.removesuffix("_rnaseq")).to_csv(matrix)
    labels = pd.read_csv(BRCA_SURVPATH, index_col=0).drop_duplicates("case_id").set_index("case_id")
    events = {}
    for endpoint in ("os", "dss", "pfi"):
        summary = build_cohort(BRCA_SURVPATH, "mcat6", tmp_path / endpoint, expression=matrix, endpoint=endpoint)
        patients = pd.read_parquet(tmp_path / endpoint / "patients.parquet").set_index("case_id")
        suffix = "" if endpoint == "os" else f"_{endpoint}"
        assert patients["survival_months"].tolist() == labels.loc[patients.index, f"survival_months{suffix}"].tolist()
        events[endpoint] = summary["events"]
    assert events["dss"] < events["os"] < events["pfi"]


def test_blca_table_with_survpath_hallmarks_gives_fifty_rnaseq_groups(tmp_path: Path) -> None:
    summary = build_cohort(BLCA_TABLE, "hallmarks", tmp_path / "cohort", splits_dir=BLCA_SPLITS, omics=["rnaseq"])
    groups = json.loads((tmp_path / "cohort" / "groups.json").read_text())
    assert len(groups["groups"]) == 50
    assert all(column.endswith("_rnaseq") for columns in groups["groups"].values() for column in columns)
    hypoxia = "HALLMARK_HYPOXIA"
    assert summary["group_sizes"][hypoxia] + summary["missing_genes"][hypoxia] == 190
    assert len(groups["missing_genes"][hypoxia]) == summary["missing_genes"][hypoxia]


def test_reactome_pathway_with_no_gene_in_the_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no column of gene group 'ADP_signalling_through_P2Y_purinoceptor_12'"):
        build_cohort(BLCA_TABLE, "reactome", tmp_path / "cohort", omics=["rnaseq"])
    assert not (tmp_path / "cohort").exists()
