"""The study's answer (rules: workflow/rules/study.smk): clustered metrics, paired comparisons,
realism and the report's tables and figures. May import: core, cohort, imaging, detection.
"""
