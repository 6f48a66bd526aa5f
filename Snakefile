from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/imaging.smk"
include: "workflow/rules/synth3d.smk"
include: "workflow/rules/synth2d.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/study.smk"


if DEEPFLUORO:

    include: "workflow/rules/datasets.smk"


# Run beside Snakemake, never submitted to a cluster: the targets, the download (compute nodes
# often have no internet), the cohort check and the second-long bookkeeping and table jobs.
localrules:
    all,
    real,
    drr,
    synth3d,
    synth2d,
    fetch_demo_data,
    folds,
    cohort_sheet,
    check_cohort,
    report_realism,
    report_synth2d,
    report_synth3d,


rule all:
    default_target: True
    input:
        all_outputs(),
