# The detector: one training run per (arm, fold, seed), evaluated on the fold's held-out real
# (demo: proxy-real) images; the mean-position baseline is evaluated the same way.


rule train_detector:
    input:
        checked=CHECKED,
        shards=imageset_shards,
    output:
        "results/detector/{arm}/fold{fold}/seed{seed}/model.pt",
    log:
        "logs/detector/{arm}/fold{fold}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train_detector/{arm}/fold{fold}_seed{seed}.tsv"
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
        train_subjects=fold_training_subject_ids,
        settings=detector_settings,
    shell:
        "python -m xrayfactory --threads {threads} train-detector --arm {wildcards.arm}"
        " --fold {wildcards.fold} --seed {wildcards.seed}"
        " --train-subjects {params.train_subjects} --out {output}"
        " --settings {params.settings:q} {input.shards} 2> {log}"


rule augmentation_qc:
    input:
        arms_training_shards(ARMS),
    output:
        report(
            "results/qc/augmentation_fold{fold}.png",
            caption="../report/augmentation_qc.rst",
            category="Image sets",
            labels={"arm": "every arm, augmented", "fold": "{fold}"},
        ),
    log:
        "logs/qc/augmentation_fold{fold}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        image_size=config["detector"]["image_size"],
        seed=config["seed"],
    shell:
        "python -m xrayfactory augmentation-qc --fold {wildcards.fold} --seed {params.seed}"
        " --image-size {params.image_size} --out {output} {input} 2> {log}"


rule evaluate_detector:
    input:
        model=rules.train_detector.output,
        test=fold_real_shards("test"),
    output:
        "results/predictions/{arm}/fold{fold}_seed{seed}.csv",
    log:
        "logs/evaluate/{arm}/fold{fold}_seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_detector/{arm}/fold{fold}_seed{seed}.tsv"
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
        "python -m xrayfactory --threads {threads} evaluate-detector --arm {wildcards.arm}"
        " --fold {wildcards.fold} --seed {wildcards.seed} --model {input.model}"
        " --image-size {params.image_size} --out {output} {input.test} 2> {log}"


rule baseline_predictions:
    input:
        checked=CHECKED,
        train=fold_real_shards("train"),
        test=fold_real_shards("test"),
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
        "python -m xrayfactory baseline-predictions --fold {wildcards.fold}"
        " --seed {wildcards.seed} --n-images {params.n_images} --train {input.train}"
        " --test {input.test} --out {output} 2> {log}"
