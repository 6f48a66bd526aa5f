# The synth3d arm: per fold, a 3D autoencoder and a mask-conditioned latent diffusion model
# trained on the fold's training CTs; CTs generated for deformed training masks are rendered
# with the drr arm's renderer, view sampler and image count. `snakemake synth3d` builds (or
# reruns) this arm alone.


rule train_synth3d_autoencoder:
    input:
        checked=CHECKED,
        ct=fold_subject_files("ct"),
        seg=fold_subject_files("segmentation"),
    output:
        "results/synth3d/fold{fold}/autoencoder.pt",
    log:
        "logs/synth3d/autoencoder_fold{fold}.log",
    benchmark:
        "results/benchmarks/train_synth3d_autoencoder/fold{fold}.tsv"
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth3d"]["threads"]
    resources:
        mem_mb=8000,
        runtime=480,
        gpu=gpu_request(),
    params:
        subjects=fold_training_subject_ids,
        settings=synth3d_settings("autoencoder"),
    shell:
        "python -m xrayfactory --threads {threads} train-synth3d-autoencoder"
        " --fold {wildcards.fold} --subjects {params.subjects}"
        " --ct {input.ct} --seg {input.seg} --out {output}"
        " --settings {params.settings:q} 2> {log}"


rule train_synth3d_diffusion:
    input:
        ct=fold_subject_files("ct"),
        seg=fold_subject_files("segmentation"),
        autoencoder=rules.train_synth3d_autoencoder.output,
    output:
        "results/synth3d/fold{fold}/diffusion.pt",
    log:
        "logs/synth3d/diffusion_fold{fold}.log",
    benchmark:
        "results/benchmarks/train_synth3d_diffusion/fold{fold}.tsv"
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth3d"]["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=gpu_request(),
    params:
        subjects=fold_training_subject_ids,
        settings=synth3d_settings("diffusion"),
    shell:
        "python -m xrayfactory --threads {threads} train-synth3d-diffusion"
        " --fold {wildcards.fold} --subjects {params.subjects}"
        " --ct {input.ct} --seg {input.seg} --autoencoder {input.autoencoder}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule sample_synth3d:
    input:
        ct=fold_subject_files("ct"),
        seg=fold_subject_files("segmentation"),
        landmarks=fold_subject_files("landmarks"),
        autoencoder=rules.train_synth3d_autoencoder.output,
        diffusion=rules.train_synth3d_diffusion.output,
    output:
        ct=synth3d_volumes("{fold}", "ct.nii.gz"),
        seg=synth3d_volumes("{fold}", "seg.nii.gz"),
        landmarks=synth3d_volumes("{fold}", "landmarks.csv"),
    log:
        "logs/synth3d/sample_fold{fold}.log",
    benchmark:
        "results/benchmarks/sample_synth3d/fold{fold}.tsv"
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth3d"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_request(),
    params:
        subjects=fold_training_subject_ids,
        settings=synth3d_settings("sample"),
    shell:
        "python -m xrayfactory --threads {threads} sample-synth3d --fold {wildcards.fold}"
        " --subjects {params.subjects} --ct {input.ct}"
        " --seg {input.seg} --landmarks {input.landmarks}"
        " --autoencoder {input.autoencoder} --diffusion {input.diffusion}"
        " --out-ct {output.ct} --out-seg {output.seg} --out-landmarks {output.landmarks}"
        " --settings {params.settings:q} 2> {log}"


rule sample_synth3d_nolatent:
    input:
        ct=fold_subject_files("ct"),
        seg=fold_subject_files("segmentation"),
        landmarks=fold_subject_files("landmarks"),
        autoencoder=rules.train_synth3d_autoencoder.output,
    output:
        ct=synth3d_volumes("{fold}", "ct.nii.gz", "synth3d_nolatent"),
        seg=synth3d_volumes("{fold}", "seg.nii.gz", "synth3d_nolatent"),
        landmarks=synth3d_volumes("{fold}", "landmarks.csv", "synth3d_nolatent"),
    log:
        "logs/synth3d_nolatent/sample_fold{fold}.log",
    benchmark:
        "results/benchmarks/sample_synth3d_nolatent/fold{fold}.tsv"
    priority: IMAGES_FIRST
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["synth3d"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpu_request(),
    params:
        subjects=fold_training_subject_ids,
        settings=synth3d_settings("nolatent"),
    shell:
        "python -m xrayfactory --threads {threads} sample-synth3d-nolatent"
        " --fold {wildcards.fold} --subjects {params.subjects} --ct {input.ct}"
        " --seg {input.seg} --landmarks {input.landmarks} --autoencoder {input.autoencoder}"
        " --out-ct {output.ct} --out-seg {output.seg} --out-landmarks {output.landmarks}"
        " --settings {params.settings:q} 2> {log}"


rule render_synth3d:
    input:
        ct="results/{arm}/fold{fold}/vol{vol}/ct.nii.gz",
        landmarks="results/{arm}/fold{fold}/vol{vol}/landmarks.csv",
    output:
        "results/imagesets/{arm}/fold{fold}/vol{vol}_part{part}.h5",
    log:
        "logs/imagesets/{arm}/fold{fold}_vol{vol}_part{part}.log",
    benchmark:
        "results/benchmarks/render_synth3d/{arm}_fold{fold}_vol{vol}_part{part}.tsv"
    wildcard_constraints:
        arm="|".join(SYNTH3D_VOLUME_ARMS),
        vol=r"\d+",
        part=r"\d+",
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
        settings=render_settings("drr"),
    shell:
        "python -m xrayfactory --threads {threads} render-synth3d --arm {wildcards.arm}"
        " --fold {wildcards.fold} --volume {wildcards.vol} --part {wildcards.part}"
        " --ct {input.ct} --landmarks {input.landmarks} --out {output}"
        " --settings {params.settings:q} 2> {log}"


rule render_drr_grid:
    input:
        checked=CHECKED,
        ct=subject_file("ct"),
        landmarks=subject_file("landmarks"),
    output:
        "results/imagesets/drr_grid/{subject}.h5",
    log:
        "logs/imagesets/drr_grid/{subject}.log",
    benchmark:
        "results/benchmarks/render_drr_grid/{subject}.tsv"
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
        settings=control_render_settings(),
    shell:
        "python -m xrayfactory --threads {threads} render-drr-grid"
        " --subject {wildcards.subject} --ct {input.ct} --landmarks {input.landmarks}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule render_drr_recon:
    input:
        checked=CHECKED,
        ct=subject_file("ct"),
        seg=subject_file("segmentation"),
        landmarks=subject_file("landmarks"),
        autoencoder=rules.train_synth3d_autoencoder.output,
    output:
        "results/imagesets/drr_recon/fold{fold}/{subject}.h5",
    log:
        "logs/imagesets/drr_recon/fold{fold}_{subject}.log",
    benchmark:
        "results/benchmarks/render_drr_recon/fold{fold}_{subject}.tsv"
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
        settings=render_settings("drr"),
    shell:
        "python -m xrayfactory --threads {threads} render-drr-recon"
        " --subject {wildcards.subject} --fold {wildcards.fold} --ct {input.ct} --seg {input.seg}"
        " --landmarks {input.landmarks} --autoencoder {input.autoencoder} --out {output}"
        " --settings {params.settings:q} 2> {log}"


rule synth3d_quality:
    input:
        ct=fold_subject_files("ct"),
        seg=fold_subject_files("segmentation"),
        landmarks=fold_subject_files("landmarks"),
        generated_ct=synth3d_volumes("{fold}", "ct.nii.gz"),
        generated_seg=synth3d_volumes("{fold}", "seg.nii.gz"),
        generated_landmarks=synth3d_volumes("{fold}", "landmarks.csv"),
        autoencoder="results/synth3d/fold{fold}/autoencoder.pt",
    output:
        table="results/synth3d/fold{fold}/quality.csv",
        qc=[
            report(
                f"results/synth3d/qc/fold{{fold}}_vol{vol}.png",
                caption="../report/synth3d_qc.rst",
                category="Generators",
                subcategory="synth3d volumes",
                labels={"fold": "{fold}", "volume": str(vol)},
            )
            for vol in range(config["synth3d"]["n_volumes"])
        ],
    log:
        "logs/synth3d/quality_fold{fold}.log",
    benchmark:
        "results/benchmarks/synth3d_quality/fold{fold}.tsv"
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        subjects=fold_training_subject_ids,
        settings=synth3d_settings("quality"),
    shell:
        "python -m xrayfactory synth3d-quality --fold {wildcards.fold}"
        " --subjects {params.subjects} --ct {input.ct} --seg {input.seg}"
        " --landmarks {input.landmarks} --generated-ct {input.generated_ct}"
        " --generated-seg {input.generated_seg}"
        " --generated-landmarks {input.generated_landmarks}"
        " --autoencoder {input.autoencoder}"
        " --out {output.table} --out-qc {output.qc} --settings {params.settings:q} 2> {log}"


rule report_synth3d:
    input:
        expand("results/synth3d/fold{fold}/quality.csv", fold=FOLD_IDS),
    output:
        report(
            "results/report/synth3d_quality.csv",
            caption="../report/synth3d_quality.rst",
            category="Generators",
            labels={"type": "table", "name": "synth3d volume quality"},
        ),
    log:
        "logs/report/synth3d_quality.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m xrayfactory report-synth3d --out {output} {input} 2> {log}"


rule synth3d:
    input:
        arm_outputs("synth3d"),
