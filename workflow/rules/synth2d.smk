# The synth2d arm: a view-conditioned 2D diffusion model per fold, trained on the fold's
# training subjects' real images, samples new labelled images from shape-model landmarks and
# sampled C-arm poses. `snakemake synth2d` builds (or reruns) this arm alone.


rule train_synth2d:
    input:
        checked=CHECKED,
        shards=fold_real_shards("train"),
    output:
        "results/synth2d/fold{fold}/model.pt",
    log:
        "logs/synth2d/train_fold{fold}.log",
    benchmark:
        "results/benchmarks/train_synth2d/fold{fold}.tsv"
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth2d"]["threads"]
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=gpu_request(),
    params:
        train_subjects=fold_training_subject_ids,
        settings=synth2d_settings("train"),
    shell:
        "python -m xrayfactory --threads {threads} train-synth2d --fold {wildcards.fold}"
        " --train-subjects {params.train_subjects} --out {output}"
        " --settings {params.settings:q} {input.shards} 2> {log}"


rule sample_synth2d:
    input:
        model=rules.train_synth2d.output,
        landmarks=fold_subject_files("landmarks"),
    output:
        "results/imagesets/synth2d/fold{fold}/shard{shard}.h5",
    log:
        "logs/synth2d/sample_fold{fold}_shard{shard}.log",
    benchmark:
        "results/benchmarks/sample_synth2d/fold{fold}_shard{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth2d"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=gpu_request(),
    params:
        settings=synth2d_settings("sample"),
    shell:
        "python -m xrayfactory --threads {threads} sample-synth2d --fold {wildcards.fold}"
        " --shard {wildcards.shard} --model {input.model} --landmarks {input.landmarks}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule synth2d_fidelity:
    input:
        model=rules.train_synth2d.output,
        detector=real_detector,
        landmarks=fold_subject_files("landmarks"),
        shards=fold_synth2d_shards,
    output:
        fidelity="results/synth2d/fold{fold}/label_fidelity.csv",
        steps="results/synth2d/fold{fold}/sampler_steps.csv",
    log:
        "logs/synth2d/fidelity_fold{fold}.log",
    benchmark:
        "results/benchmarks/synth2d_fidelity/fold{fold}.tsv"
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth2d"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=gpu_request(),
    params:
        settings=synth2d_settings("fidelity"),
    shell:
        "python -m xrayfactory --threads {threads} synth2d-fidelity --fold {wildcards.fold}"
        " --model {input.model} --detector {input.detector} --landmarks {input.landmarks}"
        " --out-fidelity {output.fidelity} --out-steps {output.steps}"
        " --settings {params.settings:q} {input.shards} 2> {log}"


rule report_synth2d:
    input:
        fidelity=expand("results/synth2d/fold{fold}/label_fidelity.csv", fold=FOLD_IDS),
        steps=expand("results/synth2d/fold{fold}/sampler_steps.csv", fold=FOLD_IDS),
    output:
        fidelity=report(
            "results/report/label_fidelity.csv",
            caption="../report/label_fidelity.rst",
            category="Generators",
            labels={"type": "table", "name": "synth2d label fidelity"},
        ),
        steps=report(
            "results/report/sampler_steps.csv",
            caption="../report/sampler_steps.rst",
            category="Generators",
            labels={"type": "table", "name": "synth2d sampler steps"},
        ),
    log:
        "logs/report/synth2d.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m xrayfactory report-synth2d --fidelity {input.fidelity}"
        " --steps {input.steps} --out-fidelity {output.fidelity}"
        " --out-steps {output.steps} 2> {log}"


rule resize_real:
    input:
        "results/imagesets/real/{subject}.h5",
    output:
        "results/imagesets/real_resized/{subject}.h5",
    log:
        "logs/imagesets/real_resized/{subject}.log",
    priority: IMAGES_FIRST
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
        "python -m xrayfactory resize-real --size {params.size} --out {output}"
        " {input} 2> {log}"


rule synth2d:
    input:
        arm_outputs("synth2d"),
