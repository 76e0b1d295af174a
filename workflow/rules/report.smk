# Report: the summary table over cohorts x models x metrics and the self-contained HTML report.


rule summary_table:
    input:
        run_summaries(),
    output:
        f"{OUT}/summary.csv",
    log:
        f"{LOGS}/summary.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "memamba summarize {input:q} -o {output:q} > {log:q} 2>&1"


rule resolved_config:
    output:
        f"{OUT}/config.yaml",
    params:
        config=json_argument(config),
    log:
        f"{LOGS}/resolved_config.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "memamba config --json {params.config:q} -o {output:q} > {log:q} 2>&1"


rule report:
    input:
        summary=f"{OUT}/summary.csv",
        config=f"{OUT}/config.yaml",
        runs=[
            path
            for cohort in COHORTS
            for model in MODELS
            for path in [
                f"{OUT}/runs/{cohort}/{model}/summary.json",
                *(f"{OUT}/runs/{cohort}/{model}/{stem}.png" for stem in KM_STEMS),
            ]
        ],
        manifests=[f"{OUT}/tiles/{cohort}/manifest.csv" for cohort in COHORTS if has_slides(cohort)],
        qc=[path for cohort in COHORTS if has_slides(cohort) for path in cohort_qc_images(cohort)],
    output:
        f"{OUT}/report.html",
    params:
        folder=lambda wildcards, output: Path(output[0]).parent,
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "memamba report {params.folder:q} -o {output:q} --config {input.config:q} > {log:q} 2>&1"


rule report_all:
    input:
        f"{OUT}/report.html",
