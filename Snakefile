# memamba: ME-Mamba multimodal survival analysis, from slides and TCGA tables to a validated model.
# Stages live in workflow/rules/*.smk; every rule calls the `memamba` command line.
from snakemake.utils import min_version, validate

min_version("8.0")


# config.yaml holds the defaults (the demo). A config given with --configfile replaces it rather than
# merging into it, so a real cohort never inherits the demo's cohorts, models or random weights;
# keys it leaves out take the schema's defaults.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/tiling.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/genomics.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{OUT}/summary.csv",
        f"{OUT}/report.html",
    default_target: True
