"""Real-data benchmark table: genomics-only models on TCGA-BLCA/BRCA (config/tcga_genomics.yaml) next to MCAT's SNN.

Run the workflow first (`snakemake --cores 2 --configfile config/tcga_genomics.yaml`), then
`python benchmarks/tcga_genomics.py [results/tcga_genomics/summary.csv]` prints a Markdown table:
per cohort and model the held-out C-index mean ± sd over MCAT's 5 folds (final epoch), the pooled
out-of-fold C with its bootstrap 95% CI, Uno's C, the integrated Brier score and the mean AUC, and the
published genomics-only SNN C-index of the MCAT repository on the same splits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

PUBLISHED_SNN = {"tcga_blca": 0.541, "tcga_brca": 0.466}  # MCAT repository, SNN genomics only, 5-fold CV
METRICS = ("c_index", "c_index_uno", "ibs", "mean_auc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path, nargs="?", default=Path("results/tcga_genomics/summary.csv"))
    table = pd.read_csv(parser.parse_args().summary)
    print("| cohort | model | C-index (mean ± sd) | pooled C [95% CI] | Uno's C | IBS | mean AUC "
          "| MCAT SNN (published) |")
    print("|---|---|---|---|---|---|---|---|")
    for (cohort, model), run in table.groupby(["cohort", "model"], sort=False):
        rows = run.set_index("metric")
        cells = [f"{rows.loc[m, 'mean']:.3f} ± {rows.loc[m, 'sd']:.3f}" if m in rows.index else "n/a"
                 for m in METRICS]
        pooled = rows.loc["c_index_pooled"]
        published = PUBLISHED_SNN.get(cohort)
        print(f"| {cohort} | {model} | {cells[0]} | {pooled['mean']:.3f} [{pooled['ci_low']:.3f}, "
              f"{pooled['ci_high']:.3f}] | {cells[1]} | {cells[2]} | {cells[3]} | "
              f"{'' if published is None else f'{published:.3f}'} |")


if __name__ == "__main__":
    main()
