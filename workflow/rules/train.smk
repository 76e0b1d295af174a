# Training and evaluation: one job per cohort x model x fold, then a summary per cohort x model.


rule train:
    input:
        cohort=lambda wildcards: cohort_files(wildcards.cohort),
        features=lambda wildcards: cohort_features(wildcards.cohort),
    output:
        risks=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/risks.csv",
        metrics=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/metrics.json",
        checkpoint=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/checkpoint.pt",
        curve=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/curve.csv",
    params:
        cohort=f"{OUT}/cohorts/{{cohort}}",
        features=f"{OUT}/features/{{cohort}}/{ENCODER}",
        folder=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}",
        model_params=lambda wildcards: json_argument(config["models"][wildcards.model]),
        train_params=json_argument({k: v for k, v in config["train"].items() if k != "device"}),
        device=config["train"]["device"],
    threads: 1
    log:
        f"{LOGS}/train/{{cohort}}/{{model}}/fold_{{fold}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{cohort}}/{{model}}/fold_{{fold}}.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} memamba train --cohort {params.cohort:q} --features {params.features:q}"
        " --fold {wildcards.fold} --model {wildcards.model} --model-params {params.model_params:q}"
        " --train-params {params.train_params:q} -o {params.folder:q} --device {params.device}"
        " > {log:q} 2>&1"


rule evaluate:
    input:
        lambda wildcards: fold_outputs(wildcards.cohort, wildcards.model),
    output:
        summary=f"{OUT}/runs/{{cohort}}/{{model}}/summary.json",
        km_png=f"{OUT}/runs/{{cohort}}/{{model}}/km.png",
        km_svg=f"{OUT}/runs/{{cohort}}/{{model}}/km.svg",
    params:
        folder=f"{OUT}/runs/{{cohort}}/{{model}}",
        folds=N_FOLDS,
        bootstrap=config["evaluate"]["bootstrap"],
        seed=config["evaluate"]["seed"],
    log:
        f"{LOGS}/evaluate/{{cohort}}/{{model}}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "memamba evaluate {params.folder:q} --folds {params.folds} --bootstrap {params.bootstrap}"
        " --seed {params.seed} > {log:q} 2>&1"


rule train_all:
    input:
        run_summaries(),
