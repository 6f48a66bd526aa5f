"""The synth3d arm (rules: workflow/rules/synth3d.smk): the model grid, the 3D autoencoder and
mask-conditioned latent diffusion model, generated CTs, their quality and the `drr_grid` /
`drr_recon` / `synth3d_nolatent` controls. May import: core, cohort, imaging.
"""
