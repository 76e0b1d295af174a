"""Raw genomic readers at cBioPortal size: memamba's validated readers vs a bare pandas read of the same files.

Usage: python benchmarks/genomics_raw.py [--genes 20531] [--samples 400] [--variants 100000] [--repeats 3]

Files (generated into a temporary folder, seeded): a gene × sample expression matrix in the layout of
cBioPortal's data_mrna_seq_v2_rsem.txt (Hugo_Symbol, Entrez_Gene_Id, one column per TCGA sample barcode,
~2% of the samples normals `-11`), and a MAF of `--variants` rows (Hugo_Symbol, Variant_Classification,
Tumor_Sample_Barcode). In the same run:
- memamba: `read_gene_matrix` (types and checks every cell, names bad cells, keeps one tumour sample per
  patient) and `read_mutations` (binary patient × gene status, silent variants excluded);
- baseline: `pandas.read_csv(sep="\\t", index_col=0)` of the matrix (numeric parse, no checks), and for the
  MAF `pandas.read_csv` plus `pandas.crosstab` of gene × sample over every variant.
Times are medians over --repeats runs; the ratio is memamba / baseline (the price of validation).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from memamba.genomics.matrices import read_gene_matrix
from memamba.genomics.mutations import read_mutations

CLASSES = ("Missense_Mutation", "Silent", "Nonsense_Mutation", "Frame_Shift_Del", "3'UTR", "Intron")


def write_matrix(path: Path, genes: int, samples: int, rng: np.random.Generator) -> None:
    barcodes = [f"TCGA-AA-{i:04d}-{'11' if i % 50 == 0 else '01'}" for i in range(samples)]
    values = pd.DataFrame(rng.gamma(1.0, 300.0, (genes, samples)).round(4), columns=barcodes)
    values.insert(0, "Entrez_Gene_Id", np.arange(genes))
    values.insert(0, "Hugo_Symbol", [f"G{i}" for i in range(genes)])
    values.to_csv(path, sep="\t", index=False)


def write_maf(path: Path, variants: int, samples: int, rng: np.random.Generator) -> None:
    pd.DataFrame({
        "Hugo_Symbol": [f"G{i}" for i in rng.integers(0, 20000, variants)],
        "Variant_Classification": rng.choice(CLASSES, variants),
        "Tumor_Sample_Barcode": [f"TCGA-AA-{i:04d}-01A-11D-A10S-08" for i in rng.integers(0, samples, variants)],
    }).to_csv(path, sep="\t", index=False)


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20531)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        matrix, maf = Path(folder) / "data_mrna_seq_v2_rsem.txt", Path(folder) / "data_mutations.txt"
        write_matrix(matrix, args.genes, args.samples, rng)
        write_maf(maf, args.variants, args.samples, rng)
        rows = [
            ("expression matrix", f"{args.genes} x {args.samples}",
             median_seconds(lambda: read_gene_matrix(matrix, what="expression", option="--expression"), args.repeats),
             median_seconds(lambda: pd.read_csv(matrix, sep="\t", index_col=0), args.repeats)),
            ("mutation MAF", f"{args.variants} variants",
             median_seconds(lambda: read_mutations(maf), args.repeats),
             median_seconds(lambda: _bare_maf(maf), args.repeats)),
        ]
    print("| input | size | memamba (s) | bare pandas (s) | ratio |")
    print("|---|---|---|---|---|")
    for name, size, ours, baseline in rows:
        print(f"| {name} | {size} | {ours:.2f} | {baseline:.2f} | {ours / baseline:.2f}x |")


def _bare_maf(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t")
    return pd.crosstab(frame["Tumor_Sample_Barcode"], frame["Hugo_Symbol"])


if __name__ == "__main__":
    main()
