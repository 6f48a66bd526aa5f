# The detector: one training run per (arm, fold, seed), evaluated on the fold's held-out real
# (demo: proxy-real) images; the mean-position baseline is evaluated the same way.


rule train_detector:
    input:
        folds="results/cohort/folds.csv",
        shards=imageset_shards,
    output:
        "results/detector/{arm}/fold{fold}/seed{seed}/model.pt",
    log:
        "logs/detector/{arm}/fold{fold}_seed{seed}.log",
    conda:
        ENV
    container:
        CUDA_IMAGE
    threads: config["detector"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=gpu_request(),
    params:
        settings=detector_settings(),
    shell:
        "python -m xrayfactory --threads {threads} train --arm {wildcards.arm}"
        " --fold {wildcards.fold} --seed {wildcards.seed} --folds {input.folds}"
        " --out {output} --settings {params.settings:q} {input.shards} 2> {log}"


rule evaluate_detector:
    input:
        folds="results/cohort/folds.csv",
        model=rules.train_detector.output,
        shards=expand("results/imagesets/real/{subject}.h5", subject=SUBJECTS),
    output:
        "results/predictions/{arm}/fold{fold}_seed{seed}.csv",
    log:
        "logs/evaluate/{arm}/fold{fold}_seed{seed}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        image_size=config["detector"]["image_size"],
    shell:
        "python -m xrayfactory --threads {threads} evaluate --arm {wildcards.arm}"
        " --fold {wildcards.fold} --seed {wildcards.seed} --folds {input.folds}"
        " --model {input.model} --image-size {params.image_size} --out {output}"
        " {input.shards} 2> {log}"


rule baseline_predictions:
    input:
        folds="results/cohort/folds.csv",
        shards=expand("results/imagesets/real/{subject}.h5", subject=SUBJECTS),
    output:
        "results/predictions/baseline/fold{fold}_seed{seed}.csv",
    log:
        "logs/evaluate/baseline/fold{fold}_seed{seed}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        n_images=config["detector"]["train_images"],
    shell:
        "python -m xrayfactory baseline --arm baseline --fold {wildcards.fold}"
        " --seed {wildcards.seed} --folds {input.folds} --n-images {params.n_images}"
        " --out {output} {input.shards} 2> {log}"


rule realism:
    input:
        folds="results/cohort/folds.csv",
        detector=real_detector,
        real=expand("results/imagesets/real/{subject}.h5", subject=SUBJECTS),
        shards=imageset_shards,
    output:
        "results/realism/{arm}/fold{fold}.csv",
    log:
        "logs/realism/{arm}/fold{fold}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=settings(
            n_images=config["evaluation"]["realism_images"],
            train_images=config["detector"]["train_images"],
            selection_seed=config["detector"]["seeds"][0],
        ),
    shell:
        "python -m xrayfactory --threads {threads} realism --arm {wildcards.arm}"
        " --fold {wildcards.fold} --folds {input.folds} --detector {input.detector}"
        " --real {input.real} --out {output} --settings {params.settings:q}"
        " {input.shards} 2> {log}"
