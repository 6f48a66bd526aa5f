# The DeepFluoro dataset (cohort.source: deepfluoro): the archive is downloaded (or copied from a
# mirror) and checked, then each specimen's CT, label map, 3D landmarks and real X-rays are
# imported into the same files the demo cohort makes. Never run by the tests (no network).


ruleorder: import_deepfluoro > demo_subject
ruleorder: import_deepfluoro > render_imageset


localrules:
    download_deepfluoro,


rule download_deepfluoro:
    output:
        config["deepfluoro"]["file"],
    log:
        "logs/cohort/download_deepfluoro.log",
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        mirror=config["deepfluoro"]["mirror"] or "",
        url=config["deepfluoro"]["url"],
        archive=config["deepfluoro"]["archive"],
        checksum=checksum_flags(config["deepfluoro"]),
    shell:
        "python -m xrayfactory download-deepfluoro --archive {params.archive} {params.checksum}"
        " --member ipcai_2020_full_res_data.h5 --mirror {params.mirror:q} --url {params.url:q}"
        " --out {output} 2> {log}"


rule import_deepfluoro:
    input:
        full=config["deepfluoro"]["file"],
        preprocessed=deepfluoro_preprocessed(),
    output:
        ct="results/cohort/{subject}/ct.nii.gz",
        seg="results/cohort/{subject}/seg.nii.gz",
        landmarks="results/cohort/{subject}/landmarks.csv",
        labels="results/cohort/{subject}/labels.tsv",
        images="results/imagesets/real/{subject}.h5",
    log:
        "logs/cohort/import_{subject}.log",
    benchmark:
        "results/benchmarks/import_deepfluoro/{subject}.tsv"
    conda:
        ENV
    container:
        CPU_IMAGE
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        preprocessed=preprocessed_flag,
        settings=settings(
            names=config["landmarks"]["names"],
            preprocessing=config["deepfluoro"]["preprocessing"],
            sid=config["carm"]["sid"],
            max_reprojection_px=config["deepfluoro"]["max_reprojection_px"],
        ),
    shell:
        "python -m xrayfactory import-deepfluoro --file {input.full}"
        " --specimen {wildcards.subject} --subject {wildcards.subject} --out-ct {output.ct}"
        " --out-seg {output.seg} --out-landmarks {output.landmarks} --out-labels {output.labels}"
        " --out-images {output.images} {params.preprocessed} --settings {params.settings:q}"
        " 2> {log}"
