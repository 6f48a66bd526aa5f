"""The landmark detector (rules: workflow/rules/detection.smk): network, domain
randomisation, heatmaps, training, prediction tables and the mean-position baseline.
May import: core, cohort, imaging, datasets.
"""
