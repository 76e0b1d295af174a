# Genomics: patient-level cohort (labels, gene-group columns) and its cross-validation splits.
from memamba.genomics.groups import BUILTIN_GROUPS

GENE_GROUPS = config["genomics"]["groups"]


rule genomics:
    input:
        unpack(genomics_sources),
        splits=splits_inputs,
        # a groups file is an input, so editing it rebuilds the cohorts; builtin names are not files
        groups=lambda wildcards: [] if GENE_GROUPS in BUILTIN_GROUPS else [GENE_GROUPS],
    output:
        patients=f"{OUT}/cohorts/{{cohort}}/patients.parquet",
        omics=f"{OUT}/cohorts/{{cohort}}/omics.parquet",
        groups=f"{OUT}/cohorts/{{cohort}}/groups.json",
        summary=f"{OUT}/cohorts/{{cohort}}/summary.json",
        splits=[f"{OUT}/cohorts/{{cohort}}/splits/splits_{k}.csv" for k in FOLDS],
    params:
        folder=f"{OUT}/cohorts/{{cohort}}",
        sources=genomics_source_arguments,
        groups=GENE_GROUPS,
        splits=lambda wildcards, input: f"--splits {Path(input.splits[0]).parent}" if input.splits else "",
        folds=N_FOLDS,
        seed=config["genomics"]["seed"],
        nan_policy=config["genomics"]["nan_policy"],
        missing=config["genomics"]["missing_policy"],
        endpoint=config["genomics"]["endpoint"],
        omics=",".join(config["genomics"]["omics"]),
    log:
        f"{LOGS}/genomics/{{cohort}}.log",
    conda:
        "../../envs/genomics.yaml"
    shell:
        "memamba genomics {params.sources} --groups {params.groups:q} {params.splits}"
        " -o {params.folder:q} --folds {params.folds} --seed {params.seed} --nan-policy {params.nan_policy}"
        " --missing {params.missing} --endpoint {params.endpoint} --omics {params.omics}"
        " > {log:q} 2>&1"


rule genomics_all:
    input:
        [path for cohort in COHORTS for path in cohort_files(cohort)],
