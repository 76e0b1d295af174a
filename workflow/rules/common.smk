# Shared definitions: output layout, cohorts and their slides, wildcard constraints, command-line arguments.
import json
import os
import shlex
from functools import cache
from pathlib import Path

import pandas as pd
from snakemake.logging import logger

from memamba.demo.plan import plan_demo
from memamba.naming import SLIDE_EXTENSIONS, slide_key

OUT = config["output_dir"].rstrip("/")
COHORTS = list(config["cohorts"])
ENCODER = config["features"]["encoder"]
SLIDES_PER_JOB = config["features"]["slides_per_job"]
N_FOLDS = config["genomics"]["n_folds"]
FOLDS = list(range(N_FOLDS))
MODELS = list(config["models"])
LOGS = f"{OUT}/logs"
BENCHMARKS = f"{OUT}/benchmarks"


wildcard_constraints:
    cohort="[A-Za-z0-9_.-]+",
    slide="[^/]+",
    encoder="[^/]+",
    model="[^/]+",
    fold=r"\d+",


def is_demo(cohort):
    return "demo" in config["cohorts"][cohort]


def demo_dir(cohort):
    return f"{OUT}/demo/{cohort}"


RAW_GENOMICS = ("clinical", "expression", "cnv", "mutations")


def is_raw(cohort):
    """A cohort given as downloaded tables (clinical patient table, omic matrices, MAF)."""
    return "clinical" in config["cohorts"][cohort]


def cohort_table(cohort):
    """The MCAT-style table of a cohort (generated for demo cohorts)."""
    if is_demo(cohort):
        return f"{demo_dir(cohort)}/genomics.csv"
    return config["cohorts"][cohort]["table"]


def genomics_sources(wildcards):
    """The files `memamba genomics` reads for a cohort, named like its options (table, clinical, …)."""
    if not is_raw(wildcards.cohort):
        return {"table": cohort_table(wildcards.cohort)}
    spec = config["cohorts"][wildcards.cohort]
    return {name: spec[name] for name in RAW_GENOMICS if name in spec}


def genomics_source_arguments(wildcards, input):
    """`--table F`, or `--clinical F [--expression F] … [--slides DIR]` for a raw cohort."""
    if not is_raw(wildcards.cohort):
        return f"--table {shlex.quote(input.table)}"
    spec = config["cohorts"][wildcards.cohort]
    arguments = [f"--{name} {shlex.quote(getattr(input, name))}" for name in RAW_GENOMICS if name in spec]
    if "expression" in spec:
        arguments.append(f"--expression-transform {spec.get('expression_transform', 'none')}")
    if "slides_dir" in spec:
        arguments.append(f"--slides {shlex.quote(spec['slides_dir'])}")
    return " ".join(arguments)


@cache
def cohort_slides(cohort):
    """Slide key -> slide file for every slide of a cohort (missing files of real cohorts are skipped).

    A real cohort without `slides_dir` is genomics-only: it has no slides, so no tiling or feature jobs.
    The slides of a raw cohort are the slide files in `slides_dir`, named by their TCGA barcode.
    """
    spec = config["cohorts"][cohort]
    if is_demo(cohort):
        patients = plan_demo(spec["demo"]["patients"], spec["demo"]["seed"])
        return {
            sid: f"{demo_dir(cohort)}/slides/{sid}.svs" for patient in patients for sid in patient.slide_ids
        }
    if "slides_dir" not in spec:
        return {}
    if is_raw(cohort):
        folder = Path(spec["slides_dir"])
        return {
            slide_key(path.name): str(path)
            for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix.lower() in SLIDE_EXTENSIONS
        }
    slides = {}
    extension = spec.get("slide_extension", ".svs")
    for slide_id in pd.read_csv(spec["table"], usecols=["slide_id"])["slide_id"].dropna().unique():
        key = slide_key(str(slide_id))
        file_name = str(slide_id) if key != str(slide_id) else f"{slide_id}{extension}"
        path = Path(spec["slides_dir"]) / file_name
        if path.exists():
            slides[key] = str(path)
        else:
            logger.warning(f"cohort {cohort}: slide file {path} not found; the slide is skipped")
    return slides


def slide_path(wildcards):
    return cohort_slides(wildcards.cohort)[wildcards.slide]


def cohort_tiles(cohort):
    return [f"{OUT}/tiles/{cohort}/{key}.h5" for key in cohort_slides(cohort)]


def cohort_qc_images(cohort):
    return [f"{OUT}/tiles/{cohort}/{key}.png" for key in cohort_slides(cohort)]


def cohort_features(cohort, encoder=ENCODER):
    return [f"{OUT}/features/{cohort}/{encoder}/{key}.h5" for key in cohort_slides(cohort)]


def slide_groups(size):
    """(cohort, slide keys) of every group of at most `size` slides, cohort by cohort, in key order."""
    for cohort in COHORTS:
        keys = sorted(cohort_slides(cohort))
        for start in range(0, len(keys), size):
            yield cohort, keys[start : start + size]


def feature_options():
    """The options of `memamba features` from the config, but the encoder, the slides and the threads."""
    features = config["features"]
    options = [weights_argument(), f"--device {features['device']}", f"--batch-size {features['batch_size']}"]
    options += [f"--num-workers {features['num_workers']}", f"--reader {features['reader']}"]
    return " ".join(options + (["--compile"] if features["compile"] else []))


def features_resources():
    """Resources a profile's `set-resources` gives the per-slide `features` rule (memory, CPUs per GPU,
    run time), which group jobs (features.slides_per_job > 1) take too: their rule names are numbered."""
    given = workflow.resource_settings.overwrite_resources.get("features", {})
    values = {name: getattr(value, "value", value) for name, value in dict(given).items()}
    return {name: value for name, value in values.items() if not name.startswith("_")}


def slide_triples(wildcards, input, output):
    """`--slide SLIDE COORDS OUTPUT` for each slide of a group job."""
    triples = zip(input.slides, input.coords, output, strict=True)
    return " ".join(f"--slide {shlex.quote(s)} {shlex.quote(c)} {shlex.quote(o)}" for s, c, o in triples)


def has_slides(cohort):
    return is_demo(cohort) or "slides_dir" in config["cohorts"][cohort]


def cohort_files(cohort):
    """The files `memamba genomics` writes for a cohort."""
    folder = f"{OUT}/cohorts/{cohort}"
    names = ["patients.parquet", "omics.parquet", "groups.json", "summary.json"]
    return [f"{folder}/{name}" for name in names] + [f"{folder}/splits/splits_{k}.csv" for k in FOLDS]


def splits_inputs(wildcards):
    splits_dir = config["cohorts"][wildcards.cohort].get("splits_dir")
    if splits_dir is None:
        return []
    return [f"{splits_dir}/splits_{k}.csv" for k in FOLDS]


def fold_outputs(cohort, model):
    return [f"{OUT}/runs/{cohort}/{model}/fold_{k}/metrics.json" for k in FOLDS]


def run_summaries():
    return [f"{OUT}/runs/{cohort}/{model}/summary.json" for cohort in COHORTS for model in MODELS]


def weights_argument():
    features = config["features"]
    if features["weights"]:
        return f"--weights {shlex.quote(str(features['weights']))}"
    if features["allow_random_weights"]:
        return "--allow-random-weights"
    return ""


def json_argument(value):
    return json.dumps(value, sort_keys=True)


# Cluster helpers (profiles/slurm). HDF5 file locks fail on many network file systems (NFS, Lustre); every job
# inherits this unless the user set it. A GPU is requested only when the stage is configured to use one.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


def gpus(device):
    """GPUs a job asks the scheduler for: 1 on a CUDA device, 0 on the CPU."""
    return 1 if str(device).startswith("cuda") else 0
