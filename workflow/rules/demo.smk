# Demo cohorts: synthetic planted-signal slides and MCAT table, one rule per demo cohort of the config.
for demo_cohort in [name for name in COHORTS if is_demo(name)]:

    rule:
        name:
            f"demo_{demo_cohort}"
        output:
            table=f"{demo_dir(demo_cohort)}/genomics.csv",
            latent_risk=f"{demo_dir(demo_cohort)}/latent_risk.csv",
            slides=list(cohort_slides(demo_cohort).values()),
        params:
            folder=lambda wildcards, output: Path(output.table).parent,
            patients=config["cohorts"][demo_cohort]["demo"]["patients"],
            seed=config["cohorts"][demo_cohort]["demo"]["seed"],
        log:
            f"{LOGS}/demo/{demo_cohort}.log",
        benchmark:
            f"{BENCHMARKS}/demo/{demo_cohort}.tsv"
        conda:
            "../../envs/slide.yaml"
        shell:
            "memamba demo -o {params.folder} --patients {params.patients} --seed {params.seed} > {log} 2>&1"
