# Features: every tissue patch of a slide through the configured encoder (GPU when configured, CPU otherwise).


rule features:
    input:
        slide=slide_path,
        coords=f"{OUT}/tiles/{{cohort}}/{{slide}}.h5",
    output:
        f"{OUT}/features/{{cohort}}/{{encoder}}/{{slide}}.h5",
    params:
        weights=weights_argument(),
        device=config["features"]["device"],
        batch_size=config["features"]["batch_size"],
        num_workers=config["features"]["num_workers"],
    threads: config["features"]["threads"]
    log:
        f"{LOGS}/features/{{cohort}}/{{encoder}}/{{slide}}.log",
    benchmark:
        f"{BENCHMARKS}/features/{{cohort}}/{{encoder}}/{{slide}}.tsv"
    conda:
        "../../envs/features.yaml"
    shell:
        "OMP_NUM_THREADS={threads} memamba features {input.slide:q} {input.coords:q} -o {output:q}"
        " --encoder {wildcards.encoder} {params.weights} --device {params.device}"
        " --batch-size {params.batch_size} --num-workers {params.num_workers} > {log:q} 2>&1"


rule features_all:
    input:
        [path for cohort in COHORTS for path in cohort_features(cohort)],
