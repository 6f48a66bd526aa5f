# Image sets: proxy-real X-rays of every subject (arm `real`) and DRRs of the training
# subjects (arm `drr`), one HDF5 shard per subject, plus a QC grid per arm (controls included).
# `snakemake real` or `snakemake drr` builds (or reruns) one arm with its detector runs.


rule render_imageset:
    input:
        checked=CHECKED,
        ct=subject_file("ct"),
        landmarks=subject_file("landmarks"),
    output:
        "results/imagesets/{arm}/{subject}.h5",
    log:
        "logs/imagesets/{arm}/{subject}.log",
    benchmark:
        "results/benchmarks/render_imageset/{arm}/{subject}.tsv"
    wildcard_constraints:
        arm="real|drr",
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=gpu_request(),
    params:
        settings=render_params,
    shell:
        "python -m xrayfactory --threads {threads} render-imageset --arm {wildcards.arm}"
        " --subject {wildcards.subject} --ct {input.ct} --landmarks {input.landmarks}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule imageset_qc:
    input:
        imageset_shards,
    output:
        report(
            "results/qc/imageset_{arm}.png",
            caption="../report/imageset_qc.rst",
            category="Image sets",
            labels={"arm": "{arm}"},
        ),
    log:
        "logs/qc/imageset_{arm}.log",
    wildcard_constraints:
        arm="|".join(ALL_ARMS),
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m xrayfactory imageset-qc --out {output} {input} 2> {log}"


rule real:
    input:
        arm_outputs("real"),


rule drr:
    input:
        arm_outputs("drr"),
