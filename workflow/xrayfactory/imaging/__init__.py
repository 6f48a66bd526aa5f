"""X-ray image formation and image sets (rules: workflow/rules/imaging.smk): C-arm geometry,
ray casting, the DRR backends, the proxy-real acquisition model, view sampling, the HDF5 image
set format, training-set selection and QC figures. May import: core, cohort.
"""
