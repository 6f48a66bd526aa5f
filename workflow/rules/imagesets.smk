# Image sets: proxy-real X-rays of every subject (arm `real`) and DRRs of the training
# subjects (arm `drr`), one HDF5 shard per subject, plus a QC grid per arm; the controls
# `drr_grid` (DRRs of the CTs on the synth3d grid) and `real_resized` (real images through the
# synth2d image size) when configured. `snakemake real` or `snakemake drr` builds (or reruns)
# one arm with its detector runs.


rule render_imageset:
    input:
        ct=subject_file("ct"),
        landmarks=subject_file("landmarks"),
    output:
        "results/imagesets/{arm}/{subject}.h5",
    log:
        "logs/imagesets/{arm}/{subject}.log",
    wildcard_constraints:
        arm="real|drr",
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
        "python -m xrayfactory --threads {threads} render --arm {wildcards.arm}"
        " --subject {wildcards.subject} --ct {input.ct} --landmarks {input.landmarks}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule render_drr_grid:
    input:
        ct=subject_file("ct"),
        landmarks=subject_file("landmarks"),
    output:
        "results/imagesets/drr_grid/{subject}.h5",
    log:
        "logs/imagesets/drr_grid/{subject}.log",
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
        settings=control_render_settings(),
    shell:
        "python -m xrayfactory --threads {threads} render --arm drr_grid"
        " --subject {wildcards.subject} --ct {input.ct} --landmarks {input.landmarks}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule resize_real:
    input:
        "results/imagesets/real/{subject}.h5",
    output:
        "results/imagesets/real_resized/{subject}.h5",
    log:
        "logs/imagesets/real_resized/{subject}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        size=config["synth2d"]["image_size"],
    shell:
        "python -m xrayfactory resize-imageset --size {params.size} --out {output}"
        " {input} 2> {log}"


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
        "python -m xrayfactory qc-imageset --out {output} {input} 2> {log}"


rule real:
    input:
        arm_outputs("real"),


rule drr:
    input:
        arm_outputs("drr"),
