# Tiling: tissue segmentation and a patch grid at the target resolution, one job per slide; a manifest per
# cohort. A slide that cannot be tiled gets an empty grid with a "failed: …" status, never a failed job.
import shlex


rule tile:
    input:
        slide=slide_path,
        mpp_table=[config["tiling"]["mpp_table"]] if config["tiling"]["mpp_table"] else [],
    output:
        coords=f"{OUT}/tiles/{{cohort}}/{{slide}}.h5",
        qc=f"{OUT}/tiles/{{cohort}}/{{slide}}.png",
    params:
        mpp=config["tiling"]["target_mpp"],
        patch_size=config["tiling"]["patch_size"],
        overlap=config["tiling"]["overlap"],
        min_tissue=config["tiling"]["min_tissue_fraction"],
        default_mpp=(
            f"--default-mpp {config['tiling']['default_mpp']}" if config["tiling"]["default_mpp"] else ""
        ),
        mpp_table=(
            f"--mpp-table {shlex.quote(config['tiling']['mpp_table'])}" if config["tiling"]["mpp_table"] else ""
        ),
        tissue=json_argument(config["tiling"]["tissue"]),
    threads: 1
    resources:
        mem_mb=2048,
    log:
        f"{LOGS}/tile/{{cohort}}/{{slide}}.log",
    benchmark:
        f"{BENCHMARKS}/tile/{{cohort}}/{{slide}}.tsv"
    conda:
        "../../envs/slide.yaml"
    shell:
        "OMP_NUM_THREADS={threads} memamba tile {input.slide:q} -o {output.coords:q} --qc {output.qc:q} --mpp {params.mpp}"
        " --patch-size {params.patch_size} --overlap {params.overlap} --min-tissue {params.min_tissue}"
        " {params.default_mpp} {params.mpp_table} --tissue {params.tissue:q} --record-failures > {log:q} 2>&1"


rule tile_manifest:
    input:
        lambda wildcards: cohort_tiles(wildcards.cohort),
    output:
        f"{OUT}/tiles/{{cohort}}/manifest.csv",
    log:
        f"{LOGS}/tile/{{cohort}}/manifest.log",
    conda:
        "../../envs/slide.yaml"
    shell:
        "memamba manifest {input:q} -o {output:q} > {log:q} 2>&1"


rule tiles_all:
    input:
        [f"{OUT}/tiles/{cohort}/manifest.csv" for cohort in COHORTS],
