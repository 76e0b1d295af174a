"""Tests of the raw-table inputs of the genomics stage: TCGA barcodes, cBioPortal/GDC matrices, MAF,
clinical tables and endpoints, slide lists, and the cohort they build."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memamba.errors import InputError
from memamba.genomics.barcodes import patient_id, pick_samples, sample_type
from memamba.genomics.build import build_cohort
from memamba.genomics.clinical import read_clinical
from memamba.genomics.groups import load_gene_groups
from memamba.genomics.matrices import read_gene_matrix
from memamba.genomics.mutations import read_mutations
from memamba.genomics.slides import read_slide_list
from memamba.genomics.tables import read_mcat_table

DATA = Path(__file__).parent / "data" / "tcga"
BLCA_TABLE = DATA / "blca" / "mcat" / "tcga_blca_all_clean.csv"
BLCA_SURVPATH = DATA / "blca" / "survpath" / "tcga_blca.csv"
GROUPS = {"first": ["TP53", "RB1", "PTEN"], "second": ["EGFR", "ERBB2"]}
CLINICAL_COMMENTS = (
    "#Patient Identifier\tOverall Survival (Months)\tOverall Survival Status\tDisease Specific Survival (Months)"
    "\tDisease Specific Survival Status\tProgress Free Survival (Months)\tProgression Free Status\n"
    "#Identifier to uniquely specify a patient.\tOverall survival in months since initial diagnosis.\t"
    "Overall patient survival status.\tDisease-specific survival in months.\tDisease-specific status.\t"
    "Progression-free survival in months.\tProgression-free status.\n"
    "#STRING\tNUMBER\tSTRING\tNUMBER\tSTRING\tNUMBER\tSTRING\n"
    "#1\t1\t1\t1\t1\t1\t1\n"
)
CLINICAL_HEADER = "PATIENT_ID\tOS_MONTHS\tOS_STATUS\tDSS_MONTHS\tDSS_STATUS\tPFS_MONTHS\tPFS_STATUS\n"


@functools.cache
def _blca_patients() -> pd.DataFrame:
    return read_mcat_table(BLCA_TABLE).drop_duplicates("case_id").reset_index(drop=True)


def blca_subset(n: int = 24) -> pd.DataFrame:
    """The first `n` patients of the real BLCA MCAT table (one row each), labels and GROUPS' omics."""
    table = _blca_patients().head(n).copy()
    columns = [f"{gene}_{omic}" for omic in ("rnaseq", "cnv") for genes in GROUPS.values() for gene in genes
               if f"{gene}_{omic}" in table.columns]
    return table[["case_id", "slide_id", "survival_months", "censorship", *columns]]


def write_clinical(path: Path, labels: pd.DataFrame) -> Path:
    """cBioPortal data_clinical_patient.txt: four '#' lines, then PATIENT_ID, OS/DSS/PFS months and status."""
    lines = [CLINICAL_COMMENTS, CLINICAL_HEADER]
    for case, months, censored in labels[["case_id", "survival_months", "censorship"]].itertuples(index=False):
        os_status = "0:LIVING" if censored else "1:DECEASED"
        dss_status = "0:ALIVE OR DEAD TUMOR FREE" if censored else "1:DEAD WITH TUMOR"
        pfs_status = "0:CENSORED" if censored else "1:PROGRESSION"
        lines.append(f"{case}\t{months}\t{os_status}\t{months}\t{dss_status}\t{months / 2}\t{pfs_status}\n")
    path.write_text("".join(lines))
    return path


def write_gene_matrix(path: Path, values: pd.DataFrame, sample_suffix: str = "-01") -> Path:
    """cBioPortal layout: Hugo_Symbol, Entrez_Gene_Id, then one column per sample barcode."""
    matrix = values.T.copy()
    matrix.columns = [f"{case}{sample_suffix}" for case in values.index]
    matrix.insert(0, "Entrez_Gene_Id", range(1, len(matrix) + 1))
    matrix.index.name = "Hugo_Symbol"
    matrix.to_csv(path, sep="\t")
    return path


def write_maf(path: Path, variants: list[tuple[str, str, str]]) -> Path:
    """A GDC-style MAF: version comment line, then Hugo_Symbol, …, Variant_Classification, Tumor_Sample_Barcode."""
    lines = ["#version 2.4\n", "Hugo_Symbol\tEntrez_Gene_Id\tVariant_Classification\tTumor_Sample_Barcode\n"]
    lines += [f"{gene}\t0\t{kind}\t{barcode}\n" for gene, barcode, kind in variants]
    path.write_text("".join(lines))
    return path


def write_raw_cohort(folder: Path, table: pd.DataFrame) -> dict[str, Path]:
    """Raw files (clinical, slides folder, expression, CNA) carrying exactly the values of `table`."""
    folder.mkdir(exist_ok=True)
    slides = folder / "slides"
    slides.mkdir()
    for slide in table["slide_id"]:
        (slides / slide).write_bytes(b"")
    omics = table.set_index("case_id")
    expression = omics[[c for c in omics.columns if c.endswith("_rnaseq")]]
    cnv = omics[[c for c in omics.columns if c.endswith("_cnv")]]
    return {
        "clinical": write_clinical(folder / "data_clinical_patient.txt", table),
        "slides": slides,
        "expression": write_gene_matrix(folder / "data_mrna_seq_v2_rsem.txt",
                                        expression.rename(columns=lambda c: c.removesuffix("_rnaseq"))),
        "cnv": write_gene_matrix(folder / "data_cna.txt", cnv.rename(columns=lambda c: c.removesuffix("_cnv"))),
    }


# --- barcodes -----------------------------------------------------------------------------------------


def test_patient_id_is_the_first_twelve_characters_of_sample_and_slide_barcodes() -> None:
    assert patient_id("TCGA-2F-A9KO-01A-11R-A38B-07") == "TCGA-2F-A9KO"
    assert patient_id("tcga-2f-a9ko-01Z-00-DX1.195576CF.svs") == "TCGA-2F-A9KO"
    assert patient_id("TCGA-2F-A9KO") == "TCGA-2F-A9KO"
    assert patient_id("slide_001.svs") is None
    assert sample_type("TCGA-2F-A9KO-11A") == 11


def test_pick_samples_prefers_primary_tumour_and_never_picks_normals() -> None:
    chosen = pick_samples(["TCGA-AA-0001-06A", "TCGA-AA-0001-01B", "TCGA-AA-0001-01A", "TCGA-AA-0001-11A",
                           "TCGA-AA-0002-11A", "TCGA-AA-0003-02A"])
    assert chosen == {"TCGA-AA-0001": "TCGA-AA-0001-01A", "TCGA-AA-0003": "TCGA-AA-0003-02A"}


# --- matrices -----------------------------------------------------------------------------------------


def test_cbioportal_expression_matrix_gives_patients_by_genes_with_primary_tumour_values(tmp_path: Path) -> None:
    path = tmp_path / "data_mrna_seq_v2_rsem.txt"
    path.write_text(
        "Hugo_Symbol\tEntrez_Gene_Id\tTCGA-AA-0001-01\tTCGA-AA-0001-11\tTCGA-AA-0002-06\tTCGA-AA-0002-01\n"
        "TP53\t7157\t10.5\t99\t3\t4.25\n"
        "\t100\t1\t1\t1\t1\n"
        "EGFR|1956\t1956\t2\t99\tNA\t5\n"
    )
    matrix = read_gene_matrix(path, what="expression matrix", option="--expression")
    assert list(matrix.index) == ["TCGA-AA-0001", "TCGA-AA-0002"]
    assert list(matrix.columns) == ["TP53", "EGFR"]
    assert matrix.to_numpy().tolist() == [[10.5, 2.0], [4.25, 5.0]]


def test_sample_by_gene_matrix_as_survpath_writes_it_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "rna_clean.csv"
    path.write_text(",TP53,EGFR\nTCGA-AA-0001,1.5,2\nTCGA-AA-0002,3,\n")
    matrix = read_gene_matrix(path, what="expression matrix", option="--expression")
    assert matrix.loc["TCGA-AA-0001", "EGFR"] == 2.0 and np.isnan(matrix.loc["TCGA-AA-0002", "EGFR"])


def test_repeated_gene_symbol_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "data_cna.txt"
    path.write_text("Hugo_Symbol\tEntrez_Gene_Id\tTCGA-AA-0001-01\nRB1\t5925\t-2\nRB1\t5925\t1\n")
    assert read_gene_matrix(path, what="copy-number matrix", option="--cnv").loc["TCGA-AA-0001", "RB1"] == -2.0


def test_text_in_a_matrix_cell_raises_naming_file_sample_line_and_gene(tmp_path: Path) -> None:
    path = tmp_path / "data_cna.txt"
    path.write_text("Hugo_Symbol\tEntrez_Gene_Id\tTCGA-AA-0001-01\nRB1\t5925\t-2\nPTEN\t5728\tdeep\n")
    with pytest.raises(InputError, match=r"data_cna.txt: column 'TCGA-AA-0001-01' line 3 \(PTEN\) holds 'deep'"):
        read_gene_matrix(path, what="copy-number matrix", option="--cnv")


def test_matrix_without_tcga_barcodes_raises(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text("gene\ts1\ts2\nTP53\t1\t2\n")
    with pytest.raises(InputError, match=r"m.txt: no TCGA barcode"):
        read_gene_matrix(path, what="expression matrix", option="--expression")


# --- mutations ----------------------------------------------------------------------------------------


def test_maf_marks_protein_altering_variants_and_ignores_silent_ones(tmp_path: Path) -> None:
    path = write_maf(tmp_path / "data_mutations.txt", [
        ("TP53", "TCGA-AA-0001-01A-11D-A10S-08", "Missense_Mutation"),
        ("TTN", "TCGA-AA-0001-01A-11D-A10S-08", "Silent"),
        ("PTEN", "TCGA-AA-0001-01A-11D-A10S-08", "3'UTR"),
        ("PTEN", "TCGA-AA-0002-01A-11D-A10S-08", "Frame_Shift_Del"),
        ("TP53", "TCGA-AA-0003-01A-11D-A10S-08", "Intron"),
    ])
    status = read_mutations(path)
    assert list(status.index) == ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003"]
    assert list(status.columns) == ["PTEN", "TP53"]
    assert status.to_numpy().tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


def test_maf_without_required_column_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.maf"
    path.write_text("Hugo_Symbol\tTumor_Sample_Barcode\nTP53\tTCGA-AA-0001-01A\n")
    with pytest.raises(InputError, match=r"bad.maf: missing MAF column\(s\) \['Variant_Classification'\]"):
        read_mutations(path)


# --- clinical tables and endpoints -----------------------------------------------------------------------


def clinical_labels() -> pd.DataFrame:
    return pd.DataFrame({"case_id": ["TCGA-AA-0001", "TCGA-AA-0002"], "survival_months": [12.5, 30.0],
                         "censorship": [0, 1]})


def test_clinical_table_skips_comment_lines_and_reads_os_status_codes(tmp_path: Path) -> None:
    labels, unlabelled = read_clinical(write_clinical(tmp_path / "c.txt", clinical_labels()))
    assert labels.to_dict("list") == clinical_labels().to_dict("list")
    assert unlabelled == []


def test_pfi_endpoint_reads_the_pfs_columns_of_pancancer_studies(tmp_path: Path) -> None:
    labels, _ = read_clinical(write_clinical(tmp_path / "c.txt", clinical_labels()), "pfi")
    assert labels["survival_months"].tolist() == [6.25, 15.0]


def test_patient_without_the_endpoint_label_is_listed_as_unlabelled(tmp_path: Path) -> None:
    path = write_clinical(tmp_path / "c.txt", clinical_labels())
    path.write_text(path.read_text().replace("30.0\t0:ALIVE OR DEAD TUMOR FREE", "[Not Available]\t[Not Available]"))
    labels, unlabelled = read_clinical(path, "dss")
    assert labels["case_id"].tolist() == ["TCGA-AA-0001"] and unlabelled == ["TCGA-AA-0002"]


def test_unknown_status_text_raises_naming_column_and_line(tmp_path: Path) -> None:
    path = write_clinical(tmp_path / "c.txt", clinical_labels())
    path.write_text(path.read_text().replace("1:DECEASED", "DECEASED"))
    with pytest.raises(InputError, match=r"c.txt: column 'OS_STATUS' is not a status code at line\(s\) 6"):
        read_clinical(path)


def test_endpoint_missing_from_clinical_table_raises_naming_available_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("PATIENT_ID\tOS_MONTHS\tOS_STATUS\nTCGA-AA-0001\t3\t1:DECEASED\n")
    with pytest.raises(InputError, match=r"c.txt: endpoint 'dss' .* needs columns DSS_MONTHS/DSS_STATUS; .*\['os'\]"):
        read_clinical(path, "dss")


def test_survpath_table_with_dss_endpoint_reads_the_dss_labels() -> None:
    raw = pd.read_csv(BLCA_SURVPATH, index_col=0)
    table = read_mcat_table(BLCA_SURVPATH, endpoint="dss")
    assert table["survival_months"].tolist() == raw["survival_months_dss"].tolist()
    assert table["censorship"].tolist() == raw["censorship_dss"].tolist()
    assert (raw["censorship_dss"] != raw["censorship"]).any()


def test_mcat_table_without_pfi_labels_raises_naming_the_columns() -> None:
    with pytest.raises(InputError, match=r"endpoint 'pfi' .* needs column\(s\) \['survival_months_pfi'"):
        read_mcat_table(BLCA_TABLE, endpoint="pfi")


# --- slides -------------------------------------------------------------------------------------------


def test_slides_folder_maps_files_to_patients_by_their_barcode(tmp_path: Path) -> None:
    for name in ("TCGA-AA-0001-01Z-00-DX1.AB.svs", "TCGA-AA-0001-01Z-00-DX2.CD.svs", "TCGA-AA-0002-01Z-00-DX1.ndpi",
                 "notes.txt", "scan_17.svs"):
        (tmp_path / name).write_bytes(b"")
    slides = read_slide_list(tmp_path)
    assert slides["case_id"].tolist() == ["TCGA-AA-0001", "TCGA-AA-0001", "TCGA-AA-0002"]
    assert slides["slide_id"].iloc[2] == "TCGA-AA-0002-01Z-00-DX1.ndpi"


def test_slides_csv_takes_case_id_when_given_else_the_barcode(tmp_path: Path) -> None:
    path = tmp_path / "slides.csv"
    path.write_text("slide_id,case_id\nscan_17.svs,TCGA-AA-0009\nTCGA-AA-0001-01Z-00-DX1.svs,\n")
    assert read_slide_list(path).to_dict("list") == {
        "case_id": ["TCGA-AA-0001", "TCGA-AA-0009"], "slide_id": ["TCGA-AA-0001-01Z-00-DX1.svs", "scan_17.svs"]}


# --- cohorts from raw files ---------------------------------------------------------------------------


def test_raw_cbioportal_files_build_the_same_cohort_as_the_mcat_table(tmp_path: Path) -> None:
    table = blca_subset()
    table.to_csv(tmp_path / "table.csv")
    files = write_raw_cohort(tmp_path / "raw", table)
    build_cohort(tmp_path / "table.csv", GROUPS, tmp_path / "from_table", n_folds=3)
    build_cohort(None, GROUPS, tmp_path / "from_raw", n_folds=3, **files)
    for name in ("patients.parquet", "omics.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "from_raw" / name),
                                      pd.read_parquet(tmp_path / "from_table" / name))
    assert [p.read_bytes() for p in sorted((tmp_path / "from_raw" / "splits").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "from_table" / "splits").iterdir())]


def test_mutation_maf_adds_mut_columns_to_the_groups(tmp_path: Path) -> None:
    table = blca_subset(12)
    files = write_raw_cohort(tmp_path, table)
    first = table["case_id"].iloc[0]
    maf = write_maf(tmp_path / "m.maf", [("TP53", f"{case}-01A-11D", "Missense_Mutation") for case in table["case_id"]]
                    + [("PTEN", f"{first}-01A-11D", "Nonsense_Mutation")])
    build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, mutations=maf, **files)
    groups = json.loads((tmp_path / "cohort" / "groups.json").read_text())["groups"]
    assert groups["first"][-2:] == ["TP53_mut", "PTEN_mut"]
    omics = pd.read_parquet(tmp_path / "cohort" / "omics.parquet").set_index("case_id")
    assert omics["PTEN_mut"].sum() == 1.0 and omics.loc[first, "PTEN_mut"] == 1.0


def test_patients_without_slides_or_omics_are_dropped_and_listed(tmp_path: Path, caplog) -> None:
    table = blca_subset(15)
    files = write_raw_cohort(tmp_path, table)
    no_slide, no_rna = table["case_id"].iloc[3], table["case_id"].iloc[5]
    for slide in files["slides"].glob(f"{no_slide}*"):
        slide.unlink()
    expression = pd.read_csv(files["expression"], sep="\t").drop(columns=f"{no_rna}-01")
    expression.to_csv(files["expression"], sep="\t", index=False)
    with caplog.at_level(logging.WARNING):
        summary = build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, **files)
    assert summary["dropped"]["no_slides"] == [no_slide] and summary["dropped"]["no_genomics"] == [no_rna]
    assert summary["patients"] == 13
    assert "1 patients have no slide" in caplog.text


def test_patient_without_the_endpoint_label_leaves_the_cohort(tmp_path: Path) -> None:
    table = blca_subset(9)
    files = write_raw_cohort(tmp_path, table)
    case = table["case_id"].iloc[1]
    lines = files["clinical"].read_text().splitlines(keepends=True)
    fields = [line.split("\t") for line in lines]
    for row in fields:
        if row[0] == case:
            row[3:5] = ["[Not Available]", "[Not Available]"]
    files["clinical"].write_text("".join("\t".join(row) for row in fields))
    summary = build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, endpoint="dss", **files)
    assert summary["dropped"]["no_label"] == [case] and summary["patients"] == 8


def test_missing_policy_fail_raises_naming_the_slides_source(tmp_path: Path) -> None:
    table = blca_subset(9)
    files = write_raw_cohort(tmp_path, table)
    for slide in files["slides"].glob(f"{table['case_id'].iloc[2]}*"):
        slide.unlink()
    with pytest.raises(InputError, match=rf"{files['slides']}: patients \['{table['case_id'].iloc[2]}'\]"):
        build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, missing_policy="fail", **files)
    assert not (tmp_path / "cohort").exists()


def test_empty_expression_cell_fails_by_default_and_is_kept_for_imputation(tmp_path: Path) -> None:
    table = blca_subset(9)
    table.loc[4, "RB1_rnaseq"] = np.nan
    files = write_raw_cohort(tmp_path, table)
    with pytest.raises(InputError, match=rf"data_mrna_seq_v2_rsem.txt: gene 'RB1' .* {table['case_id'].iloc[4]}"):
        build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, **files)
    build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, nan_policy="impute", **files)
    omics = pd.read_parquet(tmp_path / "cohort" / "omics.parquet")
    assert int(omics["RB1_rnaseq"].isna().sum()) == 1


def test_log2p1_of_raw_rsem_gives_the_logged_values(tmp_path: Path) -> None:
    table = blca_subset(9)
    rnaseq = [column for column in table.columns if column.endswith("_rnaseq")]
    raw = table.copy()
    raw[rnaseq] = np.exp2(table[rnaseq] + 10) - 1  # unlogged values whose log2(x + 1) is z + 10
    files = write_raw_cohort(tmp_path, raw)
    summary = build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, expression_transform="log2p1", **files)
    omics = pd.read_parquet(tmp_path / "cohort" / "omics.parquet").set_index("case_id").loc[table["case_id"]]
    np.testing.assert_allclose(omics[rnaseq].to_numpy(), table[rnaseq].to_numpy() + 10, atol=1e-9)
    cnv = [column for column in table.columns if column.endswith("_cnv")]
    np.testing.assert_array_equal(omics[cnv].to_numpy(), table[cnv].to_numpy())
    assert summary["expression_transform"] == "log2p1"


def test_log2p1_of_a_logged_or_z_scored_matrix_fails_naming_gene_and_patient(tmp_path: Path) -> None:
    table = blca_subset(9)  # MCAT's expression values are z-scores: some are negative
    files = write_raw_cohort(tmp_path, table)
    with pytest.raises(InputError, match=r"data_mrna_seq_v2_rsem\.txt: gene \w+, patient TCGA-\w\w-\w{4}: .* negative"):
        build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, expression_transform="log2p1", **files)
    assert not (tmp_path / "cohort").exists()


def test_expression_transform_without_an_expression_matrix_is_refused(tmp_path: Path) -> None:
    files = write_raw_cohort(tmp_path, blca_subset(9))
    files.pop("expression")
    with pytest.raises(InputError, match="applies to --expression, which is not given"):
        build_cohort(None, GROUPS, tmp_path / "cohort", n_folds=3, expression_transform="log2p1", **files)


def test_split_files_lose_the_patients_the_cohort_dropped(tmp_path: Path) -> None:
    table = blca_subset(12)
    files = write_raw_cohort(tmp_path, table)
    build_cohort(None, GROUPS, tmp_path / "full", n_folds=3, **files)
    gone = table["case_id"].iloc[0]
    for slide in files["slides"].glob(f"{gone}*"):
        slide.unlink()
    build_cohort(None, GROUPS, tmp_path / "cohort", splits_dir=tmp_path / "full" / "splits", **files)
    held_out = pd.concat(pd.read_csv(p, index_col=0)["val"] for p in (tmp_path / "cohort" / "splits").iterdir())
    assert sorted(held_out.dropna()) == sorted(table["case_id"].iloc[1:])


def test_labels_from_both_table_and_clinical_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"either with --table .* or with --clinical"):
        build_cohort(BLCA_TABLE, GROUPS, tmp_path / "c", clinical=tmp_path / "c.txt")


# --- command line -------------------------------------------------------------------------------------


def _memamba(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memamba", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_builds_a_cohort_from_raw_files_with_an_endpoint(tmp_path: Path) -> None:
    files = write_raw_cohort(tmp_path, blca_subset(12))
    groups = tmp_path / "groups.gmt"
    groups.write_text("first\tna\tTP53\tRB1\tPTEN\nsecond\tna\tEGFR\tERBB2\n")
    result = _memamba("genomics", "--clinical", files["clinical"], "--slides", files["slides"], "--expression",
                      files["expression"], "--cnv", files["cnv"], "--groups", groups, "--omics", "rnaseq",
                      "--endpoint", "pfi", "--folds", "3", "-o", tmp_path / "cohort")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "cohort" / "summary.json").read_text())
    assert summary["endpoint"] == "pfi" and summary["group_sizes"] == {"first": 3, "second": 2}


def test_cli_contract_form_builds_the_blca_cohort_on_mcat_splits(tmp_path: Path) -> None:
    splits = DATA / "blca" / "splits" / "5foldcv"
    result = _memamba("genomics", "--table", BLCA_TABLE, "--groups", "mcat6", "--splits", splits,
                      "-o", tmp_path / "cohort")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "cohort").iterdir()) == [
        "groups.json", "omics.parquet", "patients.parquet", "splits", "summary.json"]
    assert (tmp_path / "cohort" / "splits" / "splits_4.csv").read_bytes() == (splits / "splits_4.csv").read_bytes()


def test_cli_missing_endpoint_exits_2_with_one_line_and_no_output(tmp_path: Path) -> None:
    result = _memamba("genomics", "--table", BLCA_TABLE, "--endpoint", "dss", "-o", tmp_path / "cohort")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "survival_months_dss" in error_lines[0]
    assert not (tmp_path / "cohort").exists()


def test_survpath_blca_metadata_xena_rna_and_survpath_splits_make_one_cohort(tmp_path: Path) -> None:
    """Real SurvPath inputs: slide/label table (PFI endpoint), sample × gene Xena RNA, its own 5 folds."""
    survpath = DATA / "blca" / "survpath"
    rna = survpath / "xena" / "rna_clean_subset.csv"
    pathways = dict(list(load_gene_groups("reactome").items())[:10])
    summary = build_cohort(survpath / "tcga_blca.csv", pathways, tmp_path / "cohort", expression=rna,
                           endpoint="pfi", splits_dir=survpath / "splits" / "5foldcv")
    assert (summary["patients"], summary["slides"]) == (359, 423)
    assert summary["dropped"]["no_label"] == ["TCGA-C4-A0F6"]
    assert set(summary["missing_genes"].values()) == {0}
    omics = pd.read_parquet(tmp_path / "cohort" / "omics.parquet").set_index("case_id")
    raw = pd.read_csv(rna, index_col=0)
    assert omics.loc["TCGA-2F-A9KO", "PSMB6_rnaseq"] == raw.loc["TCGA-2F-A9KO", "PSMB6"]
    for fold in range(5):
        written = pd.read_csv(tmp_path / "cohort" / "splits" / f"splits_{fold}.csv", index_col=0)
        given = pd.read_csv(survpath / "splits" / "5foldcv" / f"splits_{fold}.csv", index_col=0)
        assert written["val"].dropna().tolist() == given["val"].dropna().tolist()
