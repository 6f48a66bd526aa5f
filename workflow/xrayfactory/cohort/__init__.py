"""The cohort (rules: workflow/rules/cohort.smk): subjects' CTs, label maps and 3D landmarks
(NIfTI and CSV I/O), the demo's deformed subjects, cohort sheets, folds and the cohort check.
May import: core.
"""
