"""The synth3d generator: model grid, mask conditioning, landmark carrying, train-then-sample,
resume, quality measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import CT_PATH, REPO, sigterm_after_checkpoint, sphere_volume, xrayfactory_cli
from xrayfactory.cohort.deform import DeformationParams
from xrayfactory.cohort.landmarks import load_landmarks, save_landmarks
from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation, save_nifti
from xrayfactory.core.config import validate_config
from xrayfactory.core.errors import InputError
from xrayfactory.core.rng import rng_for
from xrayfactory.synth3d.ctgrid import (
    GridSpec,
    condition,
    deformed_mask,
    grid_spec,
    latent_condition,
    model_affine,
    resample,
    training_pair,
)
from xrayfactory.synth3d.quality import dice, reference_values, tissue_values, volume_quality
from xrayfactory.synth3d.tables import quality_table

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
NAMES = ["bone", "organ"]
TINY = {
    "shape": [16, 16, 16],
    "spacing_mm": 10.0,
    "hu_range": [-1024, 1600],
    "body_hu": -500,
    "bone_hu": 200,
    "condition": {"bone": [77], "organs": [21]},
    "bone": ["bone"],
    "autoencoder": {
        "channels": [4, 8],
        "latent_channels": 2,
        "patch": [8, 8, 8],
        "steps": 30,
        "batch_size": 2,
        "learning_rate": 0.005,
        "kl_weight": 1e-6,
    },
    "diffusion": {
        "channels": [8, 8],
        "timesteps": 100,
        "steps": 30,
        "batch_size": 2,
        "learning_rate": 0.002,
    },
    "checkpoint_every": 5,
    "mixed_precision": True,
    "activation_checkpointing": True,
}
SPEC = grid_spec(TINY)
SAMPLING = {
    "seed": 0,
    "device": "cpu",
    "names": NAMES,
    "deformation": {"displacement_sd_mm": 4.0},
    "sampler": {"kind": "ddim", "steps": 5, "batch_size": 2},
    "mixed_precision": True,
}


def _phantom(shift_mm: float, *, shape=(32, 32, 32), spacing=5.0) -> tuple[Volume, Volume, dict]:
    """Air, an ellipsoidal body (40 HU), a bone ball (label 77, 800 HU), an organ (label 21)."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -spacing * (np.asarray(shape) - 1) / 2
    grid = Volume(np.zeros(shape, np.float32), affine)
    xyz = grid.voxel_to_world(np.indices(shape).reshape(3, -1).T).reshape(*shape, 3)
    bone_c = np.array([20.0 + shift_mm, 0.0, 0.0])
    organ_c = np.array([-30.0, 10.0 - shift_mm, 0.0])
    body = ((xyz / [70, 55, 70]) ** 2).sum(-1) <= 1
    bone = np.linalg.norm(xyz - bone_c, axis=-1) <= 25
    organ = np.linalg.norm(xyz - organ_c, axis=-1) <= 20
    hu = np.where(body, 40.0, -1000.0)
    hu[organ] = 10.0
    hu[bone] = 800.0
    seg = np.zeros(shape, np.int16)
    seg[organ] = 21
    seg[bone] = 77
    return (
        Volume(hu.astype(np.float32), affine),
        Volume(seg, affine),
        {"bone": bone_c, "organ": organ_c},
    )


def test_condition_channels_are_voxel_fractions_on_the_latent_grid():
    ct, seg, _ = _phantom(0.0)
    spec = GridSpec(
        shape=(32, 32, 32), spacing_mm=5.0, groups=(("bone", (77,)), ("organs", (21,))), bone=()
    )
    affine = model_affine(ct, spec)
    cond = condition(seg.data, ct.data > -500, ct.affine, affine, spec)
    assert cond.shape == (3, 32, 32, 32) and spec.channels == ["body", "bone", "organs"]
    # same grid: the channels are the masks themselves
    assert np.array_equal(cond[1] > 0.5, seg.data == 77)
    assert np.array_equal(cond[2] > 0.5, seg.data == 21)
    lat = latent_condition(torch.as_tensor(cond[None]), 4)[0].numpy()
    assert lat.shape == (3, 8, 8, 8)
    # each latent voxel holds the fraction of its 4^3 block; totals are kept
    np.testing.assert_allclose(lat.sum(axis=(1, 2, 3)) * 64, cond.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert 0 < lat[1].max() <= 1 and np.any((lat[1] > 0) & (lat[1] < 1))


def test_model_grid_keeps_the_world_frame_of_an_oblique_lps_volume():
    centre = np.array([12.0, -8.0, 5.0])
    bead = sphere_volume(centre, 12.0, shape=(48, 40, 44), spacing=2.0)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS-like voxel axes
    vol = Volume(bead.data, flip @ bead.affine)
    centre = flip[:3, :3] @ centre  # where the bead is in this volume's world
    spec = GridSpec(shape=(24, 20, 20), spacing_mm=4.0, bone=())
    affine = model_affine(vol, spec)
    # same centre, same axis directions, the requested spacing
    ref_centre = vol.voxel_to_world((np.asarray(vol.shape)[None] - 1) / 2)[0]
    grid_centre = Volume(np.zeros(spec.shape), affine).voxel_to_world(
        (np.asarray(spec.shape)[None] - 1) / 2
    )[0]
    np.testing.assert_allclose(grid_centre, ref_centre, atol=1e-9)
    np.testing.assert_allclose(affine[:3, :3], np.diag([-4.0, -4.0, 4.0]))
    out = Volume(resample(vol.data, vol.affine, affine, spec.shape, order=1, cval=0.0), affine)
    ijk = np.indices(spec.shape).reshape(3, -1).T
    w = out.data.reshape(-1)
    seen = (out.voxel_to_world(ijk) * w[:, None]).sum(0) / w.sum()
    # the bead is where it was in world mm (within a tenth of a model voxel)
    np.testing.assert_allclose(seen, centre, atol=0.4)


def test_deformed_mask_carries_landmarks_with_the_labels():
    ct, seg, lm = _phantom(0.0, shape=(64, 64, 64), spacing=2.5)
    spec = GridSpec(
        shape=(64, 64, 64), spacing_mm=2.5, groups=(("bone", (77,)), ("organs", (21,))), bone=()
    )
    params = DeformationParams(displacement_sd_mm=6.0, scale_sd=0.08, rotation_sd_deg=5.0)
    m = deformed_mask("p0", ct, seg, lm, spec, params, rng_for(0, "test", 1))
    grid = Volume(m.seg, m.affine)
    ijk = np.indices(spec.shape).reshape(3, -1).T
    world = grid.voxel_to_world(ijk)
    moved = 0.0
    for label, name in ((77, "bone"), (21, "organ")):
        centroid = world[m.seg.reshape(-1) == label].mean(0)
        # the landmark sat at the label's centre; it still does after the deformation
        assert np.linalg.norm(centroid - m.landmarks[name]) < 1.5
        moved = max(moved, np.linalg.norm(m.landmarks[name] - lm[name]))
    assert moved > 2.0  # the deformation really moved them
    assert m.condition.shape == (3, 64, 64, 64)


def test_config_shape_must_divide_through_the_networks():
    config = {"synth3d": {"shape": [18, 16, 16], "autoencoder": {"channels": [4, 8]}}}
    with pytest.raises(InputError, match=r"synth3d.shape: \[18, 16, 16\] must be divisible by 8"):
        validate_config(config, SCHEMA)
    config = {"synth3d": {"bone": ["skull"]}}
    with pytest.raises(InputError, match=r"synth3d.bone: \['skull'\] are not groups"):
        validate_config(config, SCHEMA)


def test_quality_measures():
    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    a[:5] = True
    b[2:7] = True
    assert dice(a, b) == pytest.approx(2 * 300 / 1000)
    assert dice(a & False, b & False) == 1.0
    ct, seg, _ = _phantom(0.0)
    real = tissue_values([(ct.data, seg.data)], SPEC)
    same = volume_quality(ct.data, seg.data, real, SPEC, 200)
    assert same["bone_dice"] == 1.0 and same["hu_emd_bone"] == 0.0 and same["hu_emd_other"] == 0.0
    brighter = volume_quality(ct.data + 100, seg.data, real, SPEC, 200)
    assert brighter["hu_emd_organ"] == pytest.approx(100.0)


def test_a_real_ct_is_compared_with_the_others_never_with_itself():
    """Two real CTs 100 HU apart: each is 100 HU from the other (in a pool holding itself it
    would look half as far); a generated copy of the first is 50 HU from both pooled."""
    ct, seg, _ = _phantom(0.0)
    real = [(ct.data, seg.data), (ct.data + 100, seg.data)]
    every, others = reference_values(real, SPEC)
    for (hu, s), pool in zip(real, others, strict=True):
        assert volume_quality(hu, s, pool, SPEC, 200)["hu_emd_organ"] == pytest.approx(100.0)
    copy = volume_quality(ct.data, seg.data, every, SPEC, 200)
    assert copy["hu_emd_organ"] == pytest.approx(50.0, abs=1.0)
    alone = reference_values(real[:1], SPEC)[1][0]
    assert np.isnan(volume_quality(ct.data, seg.data, alone, SPEC, 200)["hu_emd_bone"])


def test_quality_means_pool_the_derived_landmarks():
    """A generated CT that lets no landmark be derived adds nothing to the mean offset and
    lowers the mean count; the offset is pooled over every derived landmark."""
    rows = pd.DataFrame(
        {"fold": 0, "volume": ["a", "b", "0", "1"], "kind": ["real"] * 2 + ["generated"] * 2,
         "bone_dice": 0.5, "landmark_offset_mm": [10.0, 20.0, 40.0, np.nan],
         "landmarks_derived": [1, 3, 6, 0], "landmarks_labelled": 9}
    )  # fmt: skip
    mean = quality_table(rows).set_index("kind").loc[lambda t: t.fold == "mean"]
    assert mean.landmark_offset_mm.tolist() == pytest.approx([17.5, 40.0])
    assert mean.landmarks_derived.tolist() == [2.0, 3.0]


# --- the CLI stages on three phantom subjects (fold 0 trains on s1, s2) -----------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth3d")
    subjects = ["s0", "s1", "s2"]
    for i, s in enumerate(subjects):
        ct, seg, lm = _phantom(5.0 * i)
        save_nifti(d / f"{s}_ct.nii.gz", ct.data.astype(np.int16), ct.affine)
        save_nifti(d / f"{s}_seg.nii.gz", seg.data.astype(np.uint8), seg.affine)
        save_landmarks(d / f"{s}_lm.csv", lm)
    return d


def _fold0(d: Path, *kinds: str, subjects=("s1", "s2")) -> list[str]:
    args = ["--fold", "0", "--subjects", *subjects]
    for kind in kinds:
        args += [f"--{kind}", *[str(d / f"{s}_{kind}.nii.gz") for s in subjects]]
    return args


def _train(d: Path, stage: str, out: Path, *extra: str) -> list[str]:
    settings = json.dumps({"seed": 0, "device": "cpu", "synth3d": TINY})
    return [stage, *_fold0(d, "ct", "seg"), "--settings", settings, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def models(study):
    d = study
    ae = d / "full" / "autoencoder.pt"
    r = xrayfactory_cli(*_train(d, "train-synth3d-autoencoder", ae))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "synth3d autoencoder training:" in r.stderr and "ETA" in r.stderr
    ldm = d / "full" / "diffusion.pt"
    r = xrayfactory_cli(*_train(d, "train-synth3d-diffusion", ldm, "--autoencoder", str(ae)))
    assert r.returncode == 0, r.stderr[-2000:]
    return ae, ldm


@pytest.mark.parametrize("sample_posterior", [True, False])
def test_the_autoencoder_decodes_a_posterior_sample_or_its_mean(
    sample_posterior, monkeypatch, tmp_path
):
    """`sample_posterior: false` trains on the posterior's mean: the latent noise is never
    drawn, so no draw can change the weights."""
    from monai.networks.nets import AutoencoderKL

    from xrayfactory.synth3d.model import Runtime, autoencoder_settings, train_autoencoder

    pairs = [_phantom(s) for s in (0.0, 10.0)]
    x = np.stack([training_pair(ct, seg, SPEC)[0] for ct, seg, _ in pairs])
    c = np.stack([training_pair(ct, seg, SPEC)[1] for ct, seg, _ in pairs])
    ae = {**TINY["autoencoder"], "steps": 3, "sample_posterior": sample_posterior}
    a = autoencoder_settings({"autoencoder": ae})
    draws = []

    def noise_times(k: float):
        def sampling(self, mu, sigma):
            draws.append(k)
            return mu + k * sigma * torch.randn_like(sigma)

        return sampling

    weights = []
    for k in (1.0, 100.0):  # the posterior's noise, then a hundred times larger
        monkeypatch.setattr(AutoencoderKL, "sampling", noise_times(k))
        out = tmp_path / f"ae{k}.pt"
        train_autoencoder(x, c, SPEC, a, Runtime(seed=0), out, meta={}, device="cpu")
        weights.append(torch.load(out, weights_only=False)["model"])
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert same == (not sample_posterior)
    assert len(draws) == (6 if sample_posterior else 0)


def test_the_mask_prior_is_the_least_squares_tissue_mean():
    """Exact on volumes linear in their masks (an empty channel gets weight 0), and numpy's
    least squares on the stacked voxels otherwise."""
    from xrayfactory.synth3d.model import fit_mask_prior

    rng = np.random.default_rng(0)
    c = rng.random((3, 3, 6, 5, 4)).astype(np.float32)
    c[:, 2] = 0.0
    w = np.array([0.1, 0.3, -0.2, 0.0])
    x = (w[0] + np.einsum("c,nc...->n...", w[1:], c))[:, None]
    np.testing.assert_allclose(fit_mask_prior(x, c), w, atol=1e-6)
    noisy = x + rng.normal(0.0, 0.05, x.shape)
    rows = np.moveaxis(np.concatenate([np.ones_like(c[:, :1]), c], axis=1), 1, -1)
    expected = np.linalg.lstsq(rows.reshape(-1, 4), noisy.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(fit_mask_prior(noisy, c), expected, atol=1e-6)


def test_an_autoencoder_keeps_its_mask_prior_in_its_checkpoint(tmp_path, models):
    """Fitted on the training CTs (the phantoms' bone ball: 760 HU over the body), stored beside
    the weights and restored; a checkpoint without one (written before it existed, or trained
    without it) loads with none."""
    from xrayfactory.synth3d.model import (
        Runtime,
        autoencoder_settings,
        fit_mask_prior,
        load_autoencoder,
        train_autoencoder,
    )

    pairs = [training_pair(ct, seg, SPEC) for ct, seg, _ in map(_phantom, (0.0, 10.0))]
    x, c = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    ae = {**TINY["autoencoder"], "steps": 2, "mask_prior": True}
    a = autoencoder_settings({"autoencoder": ae})
    out = tmp_path / "ae.pt"
    train_autoencoder(x, c, SPEC, a, Runtime(seed=0), out, meta={})
    ckpt = torch.load(out, weights_only=False)
    np.testing.assert_allclose(ckpt["mask_prior"], fit_mask_prior(x, c), rtol=1e-5, atol=1e-7)
    bone = 1 + SPEC.channels.index("bone")
    assert ckpt["mask_prior"][bone] * 2624 == pytest.approx(760, rel=0.1)
    net = load_autoencoder(out)[0]
    np.testing.assert_allclose(net.mask_prior.weights.numpy(), ckpt["mask_prior"], rtol=1e-6)
    del ckpt["mask_prior"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert not load_autoencoder(tmp_path / "old.pt")[0].mask_prior.weights.any()
    assert not any(torch.load(models[0], weights_only=False)["mask_prior"])


def test_generated_cts_are_decoded_over_the_mask_prior(models):
    from xrayfactory.synth3d.model import Synth3D

    model = Synth3D(*models, device="cpu")
    cond = training_pair(*_phantom(5.0)[:2], SPEC)[1][None]
    kw = {"sampler": "ddim", "steps": 3, "rng_key": (0, "prior")}
    before = model.generate(cond, **kw)
    model.ae.mask_prior.weights[0] = 0.1  # a constant prior of +262 HU
    after = model.generate(cond, **kw)
    inside = (before > 0) & (before < 0.9)  # not clamped either time
    assert inside.mean() > 0.5
    np.testing.assert_allclose(after[inside], before[inside] + 0.1, atol=1e-5)


def test_without_a_diffusion_model_the_decoder_draws_from_zero_latents(models):
    """The control synth3d_nolatent: each CT is the decoder's output for a zero latent (the
    prior's mean) over the mask prior; no noise, so no random key changes it."""
    from xrayfactory.synth3d.model import Synth3D, downsampling, latent_condition, mask_args

    control = Synth3D(models[0], None, device="cpu")
    cond = training_pair(*_phantom(5.0)[:2], SPEC)[1][None]
    out = control.generate(cond, sampler=None, steps=None, rng_key=(0, "a"))
    again = control.generate(cond, sampler=None, steps=None, rng_key=(1, "b"))
    assert np.array_equal(out, again)
    c = torch.as_tensor(cond)
    shape = latent_condition(c, downsampling(control.a)).shape[2:]
    with torch.no_grad():
        z = torch.zeros(1, control.a.latent_channels, *shape)
        decoded = control.ae.decode(z, *mask_args(control.ae, c)) + control.ae.mask_prior(c)
    np.testing.assert_allclose(out[0], decoded.clamp(0, 1)[0, 0].numpy(), atol=1e-6)
    full = Synth3D(*models, device="cpu").generate(cond, sampler="ddim", steps=3, rng_key=(0, "a"))
    assert np.abs(full - out).mean() > 1e-3  # the diffusion model's latents change the CT


def test_the_nolatent_control_decodes_the_masks_synth3d_draws(study, models):
    """sample-synth3d-nolatent deforms the same masks and carries the same landmarks as
    sample-synth3d (the same random streams); only the CTs differ."""
    d = study
    for out, nolatent in ((d / "pair", False), (d / "nolatent", True)):
        r = _sample(d, models, out, n=2, nolatent=nolatent)
        assert r.returncode == 0, r.stderr[-2000:]
    assert "synth3d generation: 2/2 volumes" in r.stderr
    for k in range(2):
        a, b = (load_ct(d / sub / f"vol{k}_ct.nii.gz") for sub in ("pair", "nolatent"))
        np.testing.assert_array_equal(a.affine, b.affine)
        assert not np.array_equal(a.data, b.data)
        segs = [load_ct(d / sub / f"vol{k}_seg.nii.gz").data for sub in ("pair", "nolatent")]
        assert np.array_equal(*segs)
        lms = [(d / sub / f"vol{k}_lm.csv").read_text() for sub in ("pair", "nolatent")]
        assert lms[0] == lms[1]


def test_a_landmark_beyond_the_model_grid_stops_sampling_naming_the_key(models, tmp_path):
    """A generated CT holds nothing beyond the model grid: a carried landmark there stops the
    job before it writes any volume, with the config key to change."""
    ct, seg, lm = _phantom(0.0, shape=(40, 32, 32))  # 200 mm wide, the model grid 160 mm
    lm["organ"] = np.array([95.0, 0.0, 0.0])  # in the CT, 15 mm beyond the grid
    save_nifti(tmp_path / "ct.nii.gz", ct.data.astype(np.int16), ct.affine)
    save_nifti(tmp_path / "seg.nii.gz", seg.data.astype(np.uint8), seg.affine)
    save_landmarks(tmp_path / "lm.csv", lm)
    vols = [tmp_path / "out" / f"vol{k}" for k in range(2)]
    twice = {kind: [str(tmp_path / f"{kind}.nii.gz")] * 2 for kind in ("ct", "seg")}
    r = xrayfactory_cli(
        "sample-synth3d-nolatent",
        *("--fold", "0", "--subjects", "s1", "s2", "--ct", *twice["ct"], "--seg", *twice["seg"]),
        *("--landmarks", str(tmp_path / "lm.csv"), str(tmp_path / "lm.csv")),
        *("--autoencoder", str(models[0]), "--settings", json.dumps(SAMPLING)),
        *("--out-ct", *[f"{v}_ct.nii.gz" for v in vols]),
        *("--out-seg", *[f"{v}_seg.nii.gz" for v in vols]),
        *("--out-landmarks", *[f"{v}_lm.csv" for v in vols]),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        "error: synth3d.shape: the model grid (160 x 160 x 160 mm, centred on each CT) does not "
        "hold the carried landmarks of volume 0 (s1's deformed mask): organ; volume 1 (s2's "
        "deformed mask): organ; enlarge synth3d.shape or synth3d.spacing_mm"
    ) in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_demo_grid_holds_the_whole_demo_ct():
    """The demo's model grid (config/config.yaml, centred on each CT) holds the whole demo CT: a
    grid 320 mm long on the 336 mm CT lost a deformed symphysis landmark with `seed: 1`."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(config, SCHEMA)
    spec = grid_spec(config["synth3d"])
    ct = load_ct(CT_PATH)
    grid = Volume(np.zeros(spec.shape, np.float32), model_affine(ct, spec))
    corners = np.array(
        [
            [i, j, k]
            for i in (-0.5, ct.shape[0] - 0.5)
            for j in (-0.5, ct.shape[1] - 0.5)
            for k in (-0.5, ct.shape[2] - 0.5)
        ]
    )
    assert grid.contains(ct.voxel_to_world(corners)).all()


def test_a_diffusion_model_refuses_an_autoencoder_of_other_subjects(study, models):
    """The fold's subjects come from the workflow; a later stage checks that its autoencoder
    was trained on the same fold and subjects."""
    out = study / "x.pt"
    settings = json.dumps({"seed": 0, "device": "cpu", "synth3d": TINY})
    r = xrayfactory_cli(
        "train-synth3d-diffusion",
        *_fold0(study, "ct", "seg", subjects=("s0", "s2")),  # s0: the fold's test subject
        *("--settings", settings, "--autoencoder", str(models[0]), "--out", str(out)),
    )
    assert r.returncode == 2
    assert "trained on {'fold': 0, 'subjects': ['s1', 's2']}, not on" in r.stderr
    assert "'subjects': ['s0', 's2']" in r.stderr and not out.exists()


def test_sigterm_then_resume_equals_an_uninterrupted_run(study, models):
    d = study
    out = d / "resumed" / "autoencoder.pt"
    last = out.with_name("autoencoder.pt.last.pt")
    sigterm_after_checkpoint(
        xrayfactory_cli(*_train(d, "train-synth3d-autoencoder", out), wait=False), last
    )
    assert last.exists() and not out.exists()
    r = xrayfactory_cli(*_train(d, "train-synth3d-autoencoder", out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming synth3d autoencoder training" in r.stderr and not last.exists()
    a = torch.load(models[0], weights_only=True)
    b = torch.load(out, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["scale_factor"] == b["scale_factor"]


def _sample(d: Path, models, out: Path, n: int = 3, *, nolatent: bool = False):
    """sample-synth3d, or (nolatent) its control's job, which has no diffusion model."""
    out.mkdir(parents=True, exist_ok=True)
    vols = [out / f"vol{k}" for k in range(n)]
    lms = [str(d / f"{s}_lm.csv") for s in ("s1", "s2")]
    job = ["sample-synth3d-nolatent"] if nolatent else ["sample-synth3d"]
    return xrayfactory_cli(
        *job,
        *_fold0(d, "ct", "seg"),
        "--landmarks",
        *lms,
        "--autoencoder",
        str(models[0]),
        *([] if nolatent else ["--diffusion", str(models[1])]),
        "--out-ct",
        *[f"{v}_ct.nii.gz" for v in vols],
        "--out-seg",
        *[f"{v}_seg.nii.gz" for v in vols],
        "--out-landmarks",
        *[f"{v}_lm.csv" for v in vols],
        "--settings",
        json.dumps(SAMPLING),
    )


def test_train_then_sample_makes_cts_on_the_model_grid_with_carried_landmarks(study, models):
    d = study
    r = _sample(d, models, d / "gen")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "synth3d generation: 3/3 volumes" in r.stderr
    for k, source in enumerate(["s1", "s2", "s1"]):
        ct = load_ct(d / "gen" / f"vol{k}_ct.nii.gz")
        seg = load_segmentation(d / "gen" / f"vol{k}_seg.nii.gz", ct, "ct")
        src = load_ct(d / f"{source}_ct.nii.gz")
        assert ct.shape == SPEC.shape
        np.testing.assert_allclose(ct.affine, model_affine(src, SPEC), atol=1e-4)
        assert SPEC.hu_range[0] <= ct.data.min() and ct.data.max() <= SPEC.hu_range[1]
        assert set(np.unique(seg.data)) <= {0, 21, 77} and (seg.data == 77).any()
        lm = load_landmarks(d / "gen" / f"vol{k}_lm.csv", NAMES, ct)
        orig = load_landmarks(d / f"{source}_lm.csv", NAMES)
        assert 0 < np.linalg.norm(lm["bone"] - orig["bone"]) < 20  # carried, not copied
    # the same seed gives the same volumes
    r = _sample(d, models, d / "again", n=2)
    assert r.returncode == 0, r.stderr[-2000:]
    for k in range(2):
        a = load_ct(d / "gen" / f"vol{k}_ct.nii.gz").data
        assert np.array_equal(a, load_ct(d / "again" / f"vol{k}_ct.nii.gz").data)
    # quality of the generated volumes against the fold's real CTs
    gen = [d / "gen" / f"vol{k}" for k in range(3)]

    def quality(subjects: tuple[str, ...], out: Path):
        return xrayfactory_cli(
            "synth3d-quality",
            *_fold0(d, "ct", "seg", subjects=subjects),
            "--landmarks",
            *[str(d / f"{s}_lm.csv") for s in subjects],
            "--generated-ct",
            *[f"{g}_ct.nii.gz" for g in gen],
            "--generated-seg",
            *[f"{g}_seg.nii.gz" for g in gen],
            "--generated-landmarks",
            *[f"{g}_lm.csv" for g in gen],
            "--out-qc",
            *[f"{g}_qc.png" for g in gen],
            "--autoencoder",
            str(models[0]),
            "--out",
            str(out),
            "--settings",
            json.dumps(
                {"seed": 0, "device": "cpu", "synth3d": TINY, "names": NAMES, "labels": {"x": 1}}
            ),
        )

    r = quality(("s1",), d / "other.csv")  # the autoencoder trained on s1 and s2
    assert r.returncode == 2 and "autoencoder.pt: trained on" in r.stderr
    assert not (d / "other.csv").exists()
    r = quality(("s1", "s2"), d / "quality.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    q = pd.read_csv(d / "quality.csv")
    assert q.volume.tolist() == ["s1", "s2", "0", "1", "2"]
    assert q.kind.tolist() == ["real"] * 2 + ["generated"] * 3
    assert all(Path(f"{g}_qc.png").stat().st_size > 1000 for g in gen)  # a figure per volume
    assert q.bone_dice.between(0, 1).all() and q.filter(like="hu_emd").notna().all().all()
    # every CT through the fold's autoencoder: its reconstruction error, and what its latent does
    assert (q.recon_mae_hu > 0).all() and (q.latent_effect_hu >= 0).all()
    assert q.mask_prior_mae_hu.isna().all()  # trained without a mask prior
    assert "latent effect" in r.stderr
    # the real CTs on the model grid are the ceiling of the bone Dice
    assert (q.bone_dice[q.kind == "real"] > 0.8).all()
    # the phantom's landmark names have no anatomical definition: nothing to re-derive
    assert (q.landmarks_derived == 0).all() and q.landmark_offset_mm.isna().all()


def test_landmarks_re_derived_from_the_drawn_bone_measure_where_the_anatomy_is(demo_ct):
    """On the real CT at a 4 mm model grid the re-derived landmarks lie near the labelled ones
    (the floor of the measure); when the bone is drawn 16 mm lower than the labels say, the
    offset grows with it."""
    from tests.conftest import LABELS
    from tests.conftest import NAMES as PELVIS
    from xrayfactory.cohort.landmarks import derive_landmarks
    from xrayfactory.synth3d.quality import drawn_landmarks, landmark_offset

    ct, seg = demo_ct
    spec = GridSpec(
        shape=(96, 80, 84),
        spacing_mm=4.0,
        groups=(("pelvis", (25, 26, 77, 78)), ("femur", (75, 76)), ("spine", (27, 28))),
        bone=("pelvis", "femur", "spine"),
    )
    affine = model_affine(ct, spec)
    hu = resample(ct.data, ct.affine, affine, spec.shape, order=1, cval=-1024)
    grid_seg = resample(seg.data, seg.affine, affine, spec.shape, order=0, cval=0)
    labelled = derive_landmarks(seg, LABELS, PELVIS, "seg")
    floor = landmark_offset(
        drawn_landmarks(hu, grid_seg, affine, spec, 200.0, LABELS, PELVIS), labelled
    )
    assert floor["landmarks_derived"] == len(PELVIS) and floor["landmark_offset_mm"] < 4.0
    lower = np.roll(hu, -4, axis=2)  # +z is superior on this CT's grid: 16 mm inferior
    moved = landmark_offset(
        drawn_landmarks(lower, grid_seg, affine, spec, 200.0, LABELS, PELVIS), labelled
    )
    assert moved["landmark_offset_mm"] > 2.5 * floor["landmark_offset_mm"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_with_bf16_and_activation_checkpointing(study, tmp_path):
    settings = json.dumps({"seed": 0, "device": "cuda", "synth3d": TINY})
    out = tmp_path / "ae.pt"
    args = ["train-synth3d-autoencoder", *_fold0(study, "ct", "seg"), "--settings", settings]
    r = xrayfactory_cli(*args, "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.isfinite(torch.load(out, weights_only=True)["scale_factor"])


@pytest.mark.parametrize("n_steps", [1, 2, 9, 10, 11, 40, 1000])
def test_the_one_cycle_schedule_runs_any_step_count_up_and_down(n_steps):
    """10 steps made torch's OneCycleLR divide by zero at its first step (warm-up of 10%)."""
    from xrayfactory.synth3d.model import one_cycle

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = one_cycle(opt, 1e-3, n_steps)
    rates = [opt.param_groups[0]["lr"]]
    for _ in range(n_steps - 1):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    peak = int(np.argmax(rates))
    assert max(rates) <= 1e-3 + 1e-12
    if n_steps > 1:  # decays to a small fraction of the peak
        assert rates[-1] < rates[peak] / 100
    if n_steps >= 40:  # the peak after 10% of the steps
        assert peak == round(0.1 * n_steps) - 1 and rates[peak] == pytest.approx(1e-3)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_samplers_do_not_clip_unit_variance_latents(kind):
    """Latents are scaled to unit variance: a predicted latent of 3 must stay 3 (MONAI's DDPM
    default clip_sample=True cut it to 1, about a third of all values)."""
    from xrayfactory.synth3d.model import DiffusionSettings, make_sampler

    settings = DiffusionSettings(channels=(8,), steps=1, learning_rate=1e-3, prediction="sample")
    sched = make_sampler(kind, 10, settings)
    x0 = torch.full((1, 4, 2, 2, 2), 3.0)
    t = sched.timesteps[-1]
    _, predicted = sched.step(x0, t, torch.zeros_like(x0))
    assert torch.allclose(predicted, x0)
