"""The synth2d arm (rules: workflow/rules/synth2d.smk): the view-conditioned 2D diffusion
model, its landmark shape model, sampling, label fidelity and the `real_resized` control.
May import: core, cohort, imaging, detection.
"""
