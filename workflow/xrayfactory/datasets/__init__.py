"""Real data (rules: workflow/rules/datasets.smk): DeepFluoro import and clinical radiographs
(DICOM / PNG / JPEG / TIFF) for `predict`. May import: core, cohort, imaging.
"""
