# The cohort: the demo's real CT (mirror or download), its landmarks, K deformed subjects, the
# cohort sheet, the cohort check (every job that reads a subject waits for it), the subjects'
# QC figures (one job) and the subject-level folds.


rule fetch_demo_data:
    output:
        ct=DEMO / config["demo_data"]["ct"]["name"],
        seg=DEMO / config["demo_data"]["segmentation"]["name"],
    log:
        "logs/cohort/fetch_demo_data.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        dest=DEMO,
        mirror=config["demo_data"]["mirror"] or "",
        url=config["demo_data"]["url"],
        ct=f"{config['demo_data']['ct']['name']}={config['demo_data']['ct']['sha256']}",
        seg=f"{config['demo_data']['segmentation']['name']}={config['demo_data']['segmentation']['sha256']}",
    shell:
        "python -m xrayfactory fetch-demo-data --dest {params.dest} --mirror {params.mirror:q} --url {params.url:q}"
        " --file {params.ct} --file {params.seg} 2> {log}"


rule demo_landmarks:
    input:
        ct=rules.fetch_demo_data.output.ct,
        seg=rules.fetch_demo_data.output.seg,
    output:
        "results/cohort/base/landmarks.csv",
    log:
        "logs/cohort/demo_landmarks.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=settings(labels=config["labels"], names=config["landmarks"]["names"]),
    shell:
        "python -m xrayfactory --threads {threads} demo-landmarks --ct {input.ct} --seg {input.seg}"
        " --out {output} --settings {params.settings:q} 2> {log}"


rule demo_subject:
    input:
        ct=rules.fetch_demo_data.output.ct,
        seg=rules.fetch_demo_data.output.seg,
        landmarks=rules.demo_landmarks.output,
    output:
        ct="results/cohort/{subject}/ct.nii.gz",
        seg="results/cohort/{subject}/seg.nii.gz",
        landmarks="results/cohort/{subject}/landmarks.csv",
    log:
        "logs/cohort/subject_{subject}.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=settings(
            names=config["landmarks"]["names"],
            deformation=config["cohort"]["deformation"],
        ),
    shell:
        "python -m xrayfactory --threads {threads} demo-subject --ct {input.ct} --seg {input.seg}"
        " --landmarks {input.landmarks} --subject {wildcards.subject} --out-ct {output.ct}"
        " --out-seg {output.seg} --out-landmarks {output.landmarks}"
        " --settings {params.settings:q} 2> {log}"


rule cohort_sheet:
    input:
        ct=expand("results/cohort/{subject}/ct.nii.gz", subject=SUBJECTS),
        seg=expand("results/cohort/{subject}/seg.nii.gz", subject=SUBJECTS),
        landmarks=expand("results/cohort/{subject}/landmarks.csv", subject=SUBJECTS),
    output:
        "results/cohort/subjects.tsv",
    log:
        "logs/cohort/cohort_sheet.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        subjects=SUBJECTS,
    shell:
        "python -m xrayfactory cohort-sheet --out {output}"
        " --subjects {params.subjects} --ct {input.ct} --segmentation {input.seg}"
        " --landmarks {input.landmarks} 2> {log}"


rule cohort_qc:
    input:
        checked=CHECKED,
        ct=cohort_files("ct"),
        seg=cohort_files("segmentation"),
        landmarks=cohort_files("landmarks"),
    output:
        [
            report(
                f"results/cohort/qc/{subject}.png",
                caption="../report/subject_qc.rst",
                category="Cohort",
                subcategory="Landmarks",
                labels={"subject": subject},
            )
            for subject in SUBJECTS
        ],
    log:
        "logs/cohort/cohort_qc.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        subjects=SUBJECTS,
        settings=settings(names=config["landmarks"]["names"]),
    shell:
        "python -m xrayfactory --threads {threads} cohort-qc --subjects {params.subjects}"
        " --ct {input.ct} --seg {input.seg} --landmarks {input.landmarks} --out {output}"
        " --settings {params.settings:q} 2> {log}"


rule check_cohort:
    input:
        ct=cohort_files("ct"),
        seg=cohort_files("segmentation"),
        landmarks=cohort_files("landmarks"),
    output:
        "results/cohort/checked.csv",
    log:
        "logs/cohort/check_cohort.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        subjects=SUBJECTS,
        settings=settings(
            names=config["landmarks"]["names"], groups=checked_label_groups()
        ),
    shell:
        "python -m xrayfactory check-cohort --out {output} --subjects {params.subjects}"
        " --ct {input.ct} --seg {input.seg} --landmarks {input.landmarks}"
        " --settings {params.settings:q} 2> {log}"


rule folds:
    output:
        "results/cohort/folds.csv",
    log:
        "logs/cohort/folds.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        settings=settings(**config["split"]),
        subjects=SUBJECTS,
    shell:
        "python -m xrayfactory folds --out {output} --subjects {params.subjects}"
        " --settings {params.settings:q} 2> {log}"
