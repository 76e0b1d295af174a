# Features: every tissue patch of a slide through the configured encoder (GPU when configured, CPU otherwise).
# A CUDA job asks for one GPU (resources gpu=1), so a cluster or a multi-GPU node runs slides in parallel;
# on one node, `memamba features --device cuda` takes a free card by itself (see memamba/features/gpu_slot.py).


if SLIDES_PER_JOB == 1:

    rule features:
        input:
            slide=slide_path,
            coords=f"{OUT}/tiles/{{cohort}}/{{slide}}.h5",
        output:
            f"{OUT}/features/{{cohort}}/{{encoder}}/{{slide}}.h5",
        params:
            options=feature_options(),
        threads: config["features"]["threads"]
        resources:
            gpu=gpus(config["features"]["device"]),
        log:
            f"{LOGS}/features/{{cohort}}/{{encoder}}/{{slide}}.log",
        benchmark:
            f"{BENCHMARKS}/features/{{cohort}}/{{encoder}}/{{slide}}.tsv"
        conda:
            "../../envs/features.yaml"
        shell:
            "OMP_NUM_THREADS={threads} memamba features {input.slide:q} {input.coords:q} -o {output:q}"
            " --encoder {wildcards.encoder} {params.options} --threads {threads} > {log:q} 2>&1"

else:
    # Several slides a job (features.slides_per_job): one rule per group of slides, whose job builds the
    # encoder once. Rerunning a slide reruns its group; a slide with bad input is recorded, not fatal.
    for _number, (_cohort, _keys) in enumerate(slide_groups(SLIDES_PER_JOB)):

        rule:
            name:
                f"features_group_{_number}"
            input:
                slides=[cohort_slides(_cohort)[key] for key in _keys],
                coords=[f"{OUT}/tiles/{_cohort}/{key}.h5" for key in _keys],
            output:
                [f"{OUT}/features/{_cohort}/{ENCODER}/{key}.h5" for key in _keys],
            params:
                slides=slide_triples,
                options=feature_options(),
            threads: config["features"]["threads"]
            resources:
                gpu=gpus(config["features"]["device"]),
                **features_resources(),
            log:
                f"{LOGS}/features/{_cohort}/{ENCODER}/group_{_number}.log",
            benchmark:
                f"{BENCHMARKS}/features/{_cohort}/{ENCODER}/group_{_number}.tsv"
            conda:
                "../../envs/features.yaml"
            shell:
                "OMP_NUM_THREADS={threads} memamba features {params.slides}"
                f" --encoder {ENCODER}"
                " {params.options} --threads {threads} > {log:q} 2>&1"


rule features_manifest:
    input:
        lambda wildcards: cohort_features(wildcards.cohort),
    output:
        f"{OUT}/features/{{cohort}}/{ENCODER}/manifest.csv",
    log:
        f"{LOGS}/features/{{cohort}}/manifest.log",
    run:
        from memamba.features.manifest import write_features_manifest

        write_features_manifest(input, output[0])


rule features_all:
    input:
        [path for cohort in COHORTS for path in cohort_features(cohort)],
        [f"{OUT}/features/{cohort}/{ENCODER}/manifest.csv" for cohort in COHORTS],
