# Training and evaluation: one job per cohort x model x fold, then a summary per cohort x model.
# Model entries (memamba.train.entries): the name is free, `model` picks the type, `train` overrides train:.
# A cohort without `slides_dir` (and not a demo) is genomics-only: no tiling or feature jobs, no --features.
from memamba.train import entries

KM_STEMS = entries.km_stems(config["evaluate"]["risk_groups"])


rule train:
    input:
        cohort=lambda wildcards: cohort_files(wildcards.cohort),
        features=lambda wildcards: cohort_features(wildcards.cohort) if has_slides(wildcards.cohort) else [],
    output:
        risks=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/risks.csv",
        metrics=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/metrics.json",
        checkpoint=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/checkpoint.pt",
        curve=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}/curve.csv",
    params:
        cohort=f"{OUT}/cohorts/{{cohort}}",
        features=lambda wildcards: (
            f"--features {OUT}/features/{wildcards.cohort}/{ENCODER}" if has_slides(wildcards.cohort) else ""
        ),
        folder=f"{OUT}/runs/{{cohort}}/{{model}}/fold_{{fold}}",
        model_type=lambda wildcards: entries.model_type(config["models"], wildcards.model),
        model_params=lambda wildcards: json_argument(entries.model_params(config["models"], wildcards.model)),
        train_params=lambda wildcards: json_argument(entries.train_params(config, wildcards.model)),
        eval_params=json_argument(entries.evaluation_params(config)),
        device=config["train"]["device"],
    threads: 1
    resources:
        gpu=gpus(config["train"]["device"]),
    log:
        f"{LOGS}/train/{{cohort}}/{{model}}/fold_{{fold}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{cohort}}/{{model}}/fold_{{fold}}.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} memamba train --cohort {params.cohort:q} {params.features}"
        " --fold {wildcards.fold} --model {params.model_type} --model-params {params.model_params:q}"
        " --train-params {params.train_params:q} --eval-params {params.eval_params:q} -o {params.folder:q}"
        " --device {params.device} > {log:q} 2>&1"


rule evaluate:
    input:
        lambda wildcards: fold_outputs(wildcards.cohort, wildcards.model),
    output:
        summary=f"{OUT}/runs/{{cohort}}/{{model}}/summary.json",
        km=[f"{OUT}/runs/{{cohort}}/{{model}}/{stem}.{suffix}" for stem in KM_STEMS for suffix in ("png", "svg")],
    params:
        folder=f"{OUT}/runs/{{cohort}}/{{model}}",
        folds=N_FOLDS,
        bootstrap=config["evaluate"]["bootstrap"],
        seed=config["evaluate"]["seed"],
        risk_groups=" ".join(config["evaluate"]["risk_groups"]),
    log:
        f"{LOGS}/evaluate/{{cohort}}/{{model}}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "memamba evaluate {params.folder:q} --folds {params.folds} --bootstrap {params.bootstrap}"
        " --seed {params.seed} --risk-groups {params.risk_groups} > {log:q} 2>&1"


rule train_all:
    input:
        run_summaries(),
