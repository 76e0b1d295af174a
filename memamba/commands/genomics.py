"""`memamba genomics`: a patient-level cohort from genomic tables (MCAT-style or raw cBioPortal/GDC files)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from memamba.commands._common import SubParsers

log = logging.getLogger("memamba")

ENDPOINTS = ("os", "dss", "pfi")
OMICS = ("rnaseq", "cnv", "mut")


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "genomics",
        help="build a patient-level cohort: labels, gene groups, splits",
        description="Labels from --table (MCAT-style, rows = slides) or --clinical (cBioPortal patient table); "
        "slides from --slides or the table; omics from --expression/--cnv/--mutations or the table.",
    )
    parser.add_argument("--table", type=Path, default=None, help="MCAT-style table (rows = slides)")
    parser.add_argument(
        "--clinical",
        type=Path,
        default=None,
        help="clinical patient table (cBioPortal data_clinical_patient.txt) instead of --table",
    )
    parser.add_argument(
        "--slides",
        type=Path,
        default=None,
        help="folder of slide files named by TCGA barcode, or a CSV of slide_id[, case_id]",
    )
    parser.add_argument(
        "--expression",
        type=Path,
        default=None,
        help="gene x sample expression matrix (data_mrna_seq_v2_rsem.txt, Xena)",
    )
    parser.add_argument(
        "--expression-transform",
        choices=("none", "log2p1"),
        default="none",
        help="log2p1: log2(x + 1) of the --expression values (cBioPortal's RSEM file is not logged); default none",
    )
    parser.add_argument("--cnv", type=Path, default=None, help="gene x sample copy-number matrix (data_cna.txt)")
    parser.add_argument("--mutations", type=Path, default=None, help="mutation MAF (data_mutations.txt, GDC .maf)")
    parser.add_argument(
        "--groups",
        default="mcat6",
        help="mcat6, combine, hallmarks, reactome, a .gmt or a CSV of gene groups (default mcat6)",
    )
    parser.add_argument(
        "--omics", default=",".join(OMICS), help="comma-separated omics the groups use (default rnaseq,cnv,mut)"
    )
    parser.add_argument(
        "--endpoint",
        choices=ENDPOINTS,
        default="os",
        help="overall survival (default), disease-specific survival or progression-free interval",
    )
    parser.add_argument("--splits", type=Path, default=None, help="folder of splits_K.csv files (MCAT layout)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="cohort folder to write")
    parser.add_argument("--folds", type=int, default=5, help="folds when no --splits are given (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--nan-policy",
        choices=("fail", "impute"),
        default="fail",
        help="empty omic cells: fail, or impute the training-fold median (default fail)",
    )
    parser.add_argument(
        "--missing",
        choices=("drop", "fail"),
        default="drop",
        help="patients without label, slide or an omic: drop with a warning (default) or fail",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from memamba.genomics.build import build_cohort

    summary = build_cohort(
        args.table,
        args.groups,
        args.output,
        clinical=args.clinical,
        slides=args.slides,
        expression=args.expression,
        expression_transform=args.expression_transform,
        cnv=args.cnv,
        mutations=args.mutations,
        endpoint=args.endpoint,
        omics=[omic.strip() for omic in args.omics.split(",") if omic.strip()],
        splits_dir=args.splits,
        n_folds=args.folds,
        seed=args.seed,
        nan_policy=args.nan_policy,
        missing_policy=args.missing,
    )
    log.info("cohort: %s", json.dumps(summary, default=str))
