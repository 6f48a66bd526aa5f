# The study's tables and figures. Inputs are the per-run prediction files and the cached test
# images only: deleting results/report/ or changing report code reruns this rule alone.


rule realism:
    input:
        detector=real_detector,
        test=fold_real_shards("test"),
        shards=arms_training_shards(REALISM_ARMS),
    output:
        "results/realism/fold{fold}.csv",
    log:
        "logs/realism/fold{fold}.log",
    benchmark:
        "results/benchmarks/realism/fold{fold}.tsv"
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        arms=REALISM_ARMS,
        train_subjects=fold_training_subject_ids,
        settings=settings(
            n_images=config["evaluation"]["realism_images"],
            train_images=config["detector"]["train_images"],
            selection_seed=config["detector"]["seeds"][0],
        ),
    shell:
        "python -m xrayfactory --threads {threads} realism --arms {params.arms}"
        " --fold {wildcards.fold} --train-subjects {params.train_subjects}"
        " --detector {input.detector} --test {input.test} --out {output}"
        " --settings {params.settings:q} {input.shards} 2> {log}"


rule report:
    input:
        predictions=prediction_files(),
        test=expand("results/imagesets/real/{subject}.h5", subject=SUBJECTS),
    output:
        metrics=report(
            "results/report/metrics.csv",
            caption="../report/metrics.rst",
            category="Study",
            labels={"type": "table", "name": "metrics per arm"},
        ),
        markdown="results/report/metrics.md",
        latex="results/report/metrics.tex",
        per_fold=report(
            "results/report/per_fold.csv",
            caption="../report/per_fold.rst",
            category="Study",
            labels={"type": "table", "name": "per fold"},
        ),
        control_steps=report(
            "results/report/control_steps.csv",
            caption="../report/control_steps.rst",
            category="Study",
            labels={"type": "table", "name": "generator steps and controls"},
        ),
        per_landmark=report(
            "results/report/per_landmark.csv",
            caption="../report/per_landmark.rst",
            category="Study",
            labels={"type": "table", "name": "per landmark"},
        ),
        scaling=report(
            "results/report/scaling.csv",
            caption="../report/scaling.rst",
            category="Study",
            labels={"type": "table", "name": "data scaling"},
        ),
        scaling_figure=report(
            "results/report/scaling.png",
            caption="../report/scaling.rst",
            category="Study",
            labels={"type": "figure", "name": "data scaling"},
        ),
        cumulative=report(
            "results/report/cumulative_error.png",
            caption="../report/cumulative_error.rst",
            category="Study",
            labels={"type": "figure", "name": "cumulative error"},
        ),
        bars=report(
            "results/report/per_landmark.png",
            caption="../report/per_landmark_bars.rst",
            category="Study",
            labels={"type": "figure", "name": "per-landmark error"},
        ),
        examples=report(
            "results/report/examples.png",
            caption="../report/examples.rst",
            category="Study",
            labels={"type": "figure", "name": "test images"},
        ),
    log:
        "logs/report/report.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out_dir=output_dir,
        settings=settings(
            evaluation=config["evaluation"],
            cohort_source=config["cohort"]["source"],
            training_sets=ALL_SETS,
        ),
    shell:
        "python -m xrayfactory report --out-dir {params.out_dir}"
        " --test {input.test} --predictions {input.predictions}"
        " --settings {params.settings:q} 2> {log}"


rule report_realism:
    input:
        expand("results/realism/fold{fold}.csv", fold=FOLD_IDS),
    output:
        report(
            "results/report/realism.csv",
            caption="../report/realism.rst",
            category="Generators",
            labels={"type": "table", "name": "realism per arm"},
        ),
    log:
        "logs/report/realism.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m xrayfactory report-realism --out {output} {input} 2> {log}"
