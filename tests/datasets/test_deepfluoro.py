"""DeepFluoro import on a fixture in the exact file layout: geometry proofs (stored 2D landmarks
reproduced by the imported projection matrices; a DRR for an imported view puts a bead where the
landmark projects), the cohort and image-set files, visibility from the stored landmarks, the
reprojection gate, mirrored conventions refused, and bad input naming the group path."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage as ndi

from tests.conftest import REPO, xrayfactory_cli
from tests.datasets.deepfluoro_fixture import (
    BEAD_MM,
    PREPROCESSING,
    SPACING,
    mirror_deepfluoro,
    specimen_geometry,
    write_deepfluoro,
    write_preprocessed,
)
from tests.workflow_runs import TINY, load_config, planned_jobs, run, study_dir
from xrayfactory.cohort.landmarks import load_landmarks
from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation
from xrayfactory.core.errors import InputError
from xrayfactory.datasets.deepfluoro import (
    LANDMARKS,
    SPECIMENS,
    Reader,
    image_affine,
    read_preprocessed,
)
from xrayfactory.imaging.drr import TorchRenderer
from xrayfactory.imaging.geometry import in_image, project
from xrayfactory.imaging.imageset import read_imageset

NAMES = list(LANDMARKS)


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory):
    return write_deepfluoro(tmp_path_factory.mktemp("deepfluoro") / "ipcai_2020_full_res_data.h5")


def _import(path, spec):
    with Reader(path) as r:
        params = r.proj_params()
        specimen = r.specimen(spec, NAMES)
        return specimen, r.projections(spec, NAMES, PREPROCESSING, params, specimen.landmarks)


PREP = {"preprocessing": {"border": 16, "downsample": 4}}  # PREPROCESSING in settings
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
MAX_PX = SCHEMA["properties"]["deepfluoro"]["properties"]["max_reprojection_px"]["default"]
SID = SCHEMA["properties"]["carm"]["properties"]["sid"]["default"]


def _settings(**over) -> str:
    """import-deepfluoro's settings as its rule passes them: the schema's defaults and the
    fixture's preprocessing, with `over` replacing keys."""
    s = {"names": NAMES, **PREP, "sid": SID, "max_reprojection_px": MAX_PX}
    return json.dumps({**s, **over})


def _cli_args(path, spec, tmp_path):
    """import-deepfluoro arguments writing every output under `tmp_path` (settings apart)."""
    return [
        "import-deepfluoro", "--file", str(path), "--specimen", spec, "--subject", "s1",
        "--out-ct", str(tmp_path / "ct.nii.gz"), "--out-seg", str(tmp_path / "seg.nii.gz"),
        "--out-landmarks", str(tmp_path / "l.csv"), "--out-images", str(tmp_path / "real.h5"),
        "--out-labels", str(tmp_path / "labels.tsv"),
    ]  # fmt: skip


@pytest.mark.parametrize("index", [0, 1, 2])
def test_imported_projections_reproduce_the_stored_landmarks(fixture_file, index):
    specimen, projs = _import(fixture_file, SPECIMENS[index])
    _, lps = specimen_geometry(index)
    ras = np.stack([specimen.landmarks[n] for n in NAMES])
    np.testing.assert_allclose(ras, np.stack(list(lps.values())) * [-1, -1, 1])
    assert projs.images.shape == (3, 56, 56) and projs.ids == ["000", "001", "002"]
    for image, stored, p in zip(projs.images, projs.landmarks, projs.projection, strict=True):
        uv, depth = project(p, ras)
        assert (depth > 0).all()
        assert np.abs(uv - stored).max() < 0.5  # px, after crop, rotation and downsampling
        # the image agrees: bone-bright blobs sit at the landmarks
        inside = (uv > 2).all(1) & (uv < 53).all(1)
        assert inside.sum() >= 5
        for u, v in uv[inside]:
            r, c = round(v), round(u)
            patch = image[r - 1 : r + 2, c - 1 : c + 2]
            assert patch.max() > 0.3 * image.max()


def test_rotated_projection_mirrors_the_raw_frame(fixture_file):
    with h5py.File(fixture_file) as f:
        g = f[f"{SPECIMENS[0]}/projections/001"]
        assert g["rot-180-for-up"][()] == 1
        raw = np.stack([g[f"gt-landmarks/{n}"][()].ravel() for n in NAMES])
    _, projs = _import(fixture_file, SPECIMENS[0])
    b, d = PREPROCESSING.border, PREPROCESSING.downsample
    expected = ((256 - 2 * b - 1 - (raw - b)) + 0.5) / d - 0.5
    np.testing.assert_allclose(projs.landmarks[1], expected)


def test_drr_for_an_imported_view_puts_the_bead_at_the_landmark(fixture_file):
    specimen, projs = _import(fixture_file, SPECIMENS[0])
    ct = Volume(specimen.ct, specimen.affine)
    ras = np.stack([specimen.landmarks[n] for n in NAMES])
    p = projs.projection[1]  # a rotated-for-up view
    uv, _ = project(p, ras)
    others = np.linalg.norm(uv[:, None] - uv[None], axis=-1) + np.eye(len(uv)) * 1e9
    target = int(np.argmax(others.min(1) * ((uv > 8) & (uv < 48)).all(1)))
    ijk = np.stack(np.meshgrid(*map(np.arange, ct.shape), indexing="ij"), -1).reshape(-1, 3)
    near = np.linalg.norm(ct.voxel_to_world(ijk) - ras[target], axis=1) <= BEAD_MM + max(SPACING)
    without = Volume(ct.data.copy(), ct.affine)
    without.data.reshape(-1)[near] = 0.0
    renderer = TorchRenderer(device="cpu")
    rows, cols = projs.images.shape[1:]
    diff = (
        renderer.render(ct, p[None], rows, cols)[0]
        - renderer.render(without, p[None], rows, cols)[0]
    )
    mask = diff > 0.05 * diff.max()
    row, col = ndi.center_of_mass(diff * mask)
    assert np.hypot(col - uv[target, 0], row - uv[target, 1]) < 0.5


def test_cli_writes_the_cohort_and_the_real_image_set(fixture_file, tmp_path):
    out = {k: tmp_path / name for k, name in (("ct", "ct.nii.gz"), ("seg", "seg.nii.gz"))}
    out |= {"landmarks": tmp_path / "landmarks.csv", "images": tmp_path / "real.h5"}
    out |= {"labels": tmp_path / "labels.tsv"}
    settings = _settings()
    r = xrayfactory_cli(
        "import-deepfluoro", "--file", str(fixture_file), "--specimen", SPECIMENS[2],
        "--subject", "s3", "--out-ct", str(out["ct"]), "--out-seg", str(out["seg"]),
        "--out-landmarks", str(out["landmarks"]), "--out-images", str(out["images"]),
        "--out-labels", str(out["labels"]),
        "--settings", settings,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.search(r"stored 2D landmarks \(visible\): mean 0\.\d\d px, max 0\.\d\d px", r.stderr)
    ct = load_ct(out["ct"])
    seg = load_segmentation(out["seg"], ct, out["ct"])
    assert ct.shape == (36, 32, 28) and set(np.unique(seg.data)) == {0, 1, 2, 3, 4, 5, 6}
    assert np.allclose(np.diag(ct.affine)[:3], [-4.0, -4.0, 5.0])  # LPS grid seen in RAS
    assert out["labels"].read_text().splitlines()[0] == "1\tleft-hemipelvis"
    landmarks = load_landmarks(out["landmarks"], NAMES, ct)
    specimen, projs = _import(fixture_file, SPECIMENS[2])
    for n in NAMES:
        np.testing.assert_allclose(landmarks[n], specimen.landmarks[n], atol=1e-3)
    s = read_imageset(out["images"])
    assert s.images.shape == (3, 56, 56) and s.attrs["arm"] == "real" and not s.attrs["proxy"]
    assert s.attrs["pixel_spacing_mm"] == pytest.approx(1.94 * 4)
    np.testing.assert_allclose(s.projection, projs.projection)
    np.testing.assert_allclose(s.landmarks, projs.landmarks, rtol=1e-6)  # the stored labels
    np.testing.assert_array_equal(s.visible, in_image(projs.landmarks, 56, 56))
    assert (s.subject == "s3").all() and s.visible.dtype == bool
    assert np.abs(s.view[:, :2]).max() < 45  # near-AP views recovered as angles
    lao, cran = s.view[:, 0], s.view[:, 1]  # and logged, to compare with views.*
    logged = f"views LAO {lao.min():.0f} to {lao.max():.0f}, CRAN {cran.min():.0f} to "
    assert logged in r.stderr, r.stderr


def test_import_stops_when_the_pose_convention_is_off(fixture_file, tmp_path):
    """A 60 mm error in the pose offset moves the projected landmarks by ~15 px: the import
    refuses to write a cohort whose DRRs would not match its X-rays."""
    out = tmp_path / "ct.nii.gz"
    prep = {"border": 16, "downsample": 4, "pose_offset_mm": [60.0, -0.5, -0.5]}
    args = [
        "import-deepfluoro", "--file", str(fixture_file), "--specimen", SPECIMENS[0],
        "--subject", "s1", "--out-ct", str(out), "--out-seg", str(tmp_path / "seg.nii.gz"),
        "--out-landmarks", str(tmp_path / "l.csv"), "--out-images", str(tmp_path / "real.h5"),
        "--out-labels", str(tmp_path / "labels.tsv"),
    ]  # fmt: skip
    r = xrayfactory_cli(*args, "--settings", _settings(preprocessing=prep))
    assert r.returncode == 2
    assert re.search(
        rf"full_res_data.h5: specimen {SPECIMENS[0]}: .* land \d+\.\d px \(mean; max \d+\.\d px\) "
        r"from the stored 2D landmarks, more than deepfluoro.max_reprojection_px = 1.0",
        r.stderr,
    ), r.stderr
    assert not list(tmp_path.iterdir())  # nothing written
    loose = _settings(preprocessing=prep, max_reprojection_px=1000.0)
    assert xrayfactory_cli(*args, "--settings", loose).returncode == 0


def test_default_gate_stops_a_two_pixel_error(fixture_file, tmp_path):
    """An 8 mm error in the pose offset moves the projected landmarks by about 2 px: within
    the old 5 px gate, over the default 1 px one (the schema's)."""
    assert MAX_PX == 1.0
    out = tmp_path / "out"
    out.mkdir()
    args = _cli_args(fixture_file, SPECIMENS[0], out)
    prep = {"border": 16, "downsample": 4, "pose_offset_mm": [8.0, -0.5, -0.5]}
    r = xrayfactory_cli(*args, "--settings", _settings(preprocessing=prep))
    assert r.returncode == 2, r.stderr
    m = re.search(
        rf"error: {re.escape(str(fixture_file))}: specimen {SPECIMENS[0]}: .* land "
        r"(\d+\.\d) px \(mean; max \d+\.\d px\) from the stored 2D landmarks, more than "
        r"deepfluoro.max_reprojection_px = 1.0",
        r.stderr,
    )
    assert m and 1.5 <= float(m.group(1)) <= 3.0, r.stderr
    assert not list(out.iterdir())  # nothing written
    old = _settings(preprocessing=prep, max_reprojection_px=5.0)
    assert xrayfactory_cli(*args, "--settings", old).returncode == 0


def test_visibility_follows_the_stored_landmarks(tmp_path):
    """A landmark that P puts in the image is invisible when its stored 2D landmark lies
    outside it, is not finite, or is absent; the labels stay the stored ones."""
    path = write_deepfluoro(tmp_path / "vis.h5", n_specimens=1)
    specimen, projs = _import(path, SPECIMENS[0])
    ras = np.stack([specimen.landmarks[n] for n in NAMES])
    uv, _ = project(projs.projection[0], ras)
    inside = np.flatnonzero(((uv > 5) & (uv < 50)).all(1))
    outside, nan, absent = (NAMES[i] for i in inside[:3])
    with h5py.File(path, "a") as f:
        g = f[f"{SPECIMENS[0]}/projections/000/gt-landmarks"]
        g[outside][...] = np.array([[-300.0], [120.0]])  # raw px: left of the image
        g[nan][...] = np.full((2, 1), np.nan)
        del g[absent]
    out = tmp_path / "out"
    out.mkdir()
    r = xrayfactory_cli(*_cli_args(path, SPECIMENS[0], out), "--settings", _settings())
    assert r.returncode == 0, r.stderr
    s = read_imageset(out / "real.h5")
    i_out, i_nan, i_absent = (NAMES.index(n) for n in (outside, nan, absent))
    assert not s.visible[0, [i_out, i_nan, i_absent]].any()
    a = image_affine(256, 256, PREPROCESSING, rotate=False)
    np.testing.assert_allclose(s.landmarks[0, i_out], a[:2] @ [-300.0, 120.0, 1.0], rtol=1e-6)
    assert np.isfinite(s.landmarks).all()  # the missing ones labelled where P puts them
    np.testing.assert_allclose(s.landmarks[0, [i_nan, i_absent]], uv[[i_nan, i_absent]], atol=1e-3)
    others = np.setdiff1d(np.arange(len(NAMES)), [i_out, i_nan, i_absent])
    np.testing.assert_array_equal(
        s.visible[0, others], in_image(projs.landmarks[0, others], 56, 56)
    )
    np.testing.assert_array_equal(s.visible[1:], in_image(projs.landmarks[1:], 56, 56))


def test_mirrored_convention_is_refused(tmp_path):
    """Images flipped left-right with the stored geometry mirrored to match: the stored
    landmarks are still reproduced exactly, but P has the other handedness than the synthetic
    C-arm's, so the import stops and writes nothing."""
    path = mirror_deepfluoro(write_deepfluoro(tmp_path / "mirrored.h5", n_specimens=1))
    offset = np.eye(4)
    offset[:3, 3] = PREPROCESSING.pose_offset_mm
    with h5py.File(path) as f:  # the mirrored file is self-consistent
        k, e = f["proj-params/intrinsic"][()], f["proj-params/extrinsic"][()]
        lps = np.stack([f[f"{SPECIMENS[0]}/vol-landmarks/{n}"][()].ravel() for n in NAMES])
        g = f[f"{SPECIMENS[0]}/projections/000"]
        pose = g["gt-poses/cam-to-pelvis-vol"][()]
        stored = np.stack([g[f"gt-landmarks/{n}"][()].ravel() for n in NAMES])
    uv, _ = project(k @ (e @ np.linalg.inv(offset @ pose))[:3], lps)
    np.testing.assert_allclose(uv, stored, atol=1e-6)
    where = f"mirrored.h5:/{SPECIMENS[0]}/projections/000"
    problem = f"mirrored convention: specimen {SPECIMENS[0]}, projection 000"
    with pytest.raises(InputError, match=f"{where}: {problem}"):
        _import(path, SPECIMENS[0])
    out = tmp_path / "out"
    out.mkdir()
    r = xrayfactory_cli(*_cli_args(path, SPECIMENS[0], out), "--settings", _settings())
    assert r.returncode == 2 and f"error: {tmp_path}/{where}: {problem}" in r.stderr, r.stderr
    assert not list(out.iterdir())  # nothing written


def test_preprocessed_variant_gives_the_images_and_labels(fixture_file, tmp_path):
    ds = write_preprocessed(fixture_file, tmp_path / "ipcai_2020_ds_4x.h5")
    images, landmarks = read_preprocessed(ds, SPECIMENS[1], NAMES)
    _, projs = _import(fixture_file, SPECIMENS[1])
    np.testing.assert_array_equal(images, projs.images)
    np.testing.assert_allclose(
        landmarks, projs.landmarks
    )  # names reordered, (N, 2, L) -> (N, L, 2)
    out = tmp_path / "real.h5"
    args = [
        "import-deepfluoro", "--file", str(fixture_file), "--specimen", SPECIMENS[1],
        "--subject", "s2", "--out-ct", str(tmp_path / "ct.nii.gz"),
        "--out-seg", str(tmp_path / "seg.nii.gz"), "--out-landmarks", str(tmp_path / "l.csv"),
        "--out-images", str(out), "--out-labels", str(tmp_path / "labels.tsv"),
        "--preprocessed", str(ds),
    ]  # fmt: skip
    r = xrayfactory_cli(*args, "--settings", _settings())
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(read_imageset(out).landmarks, projs.landmarks, rtol=1e-6)
    r = xrayfactory_cli(
        *args, "--settings", _settings(preprocessing={"border": 16, "downsample": 2})
    )
    assert r.returncode != 0 and "set deepfluoro.preprocessing.downsample" in r.stderr


@pytest.mark.parametrize(
    "damage,where,problem",
    [
        (lambda f: f.__delitem__("proj-params/intrinsic"), "/proj-params/intrinsic", "missing"),
        (
            lambda f: (
                f.__delitem__("proj-params/extrinsic"),
                f.create_dataset("proj-params/extrinsic", data=np.eye(3)),
            ),
            "/proj-params/extrinsic",
            r"shape \(3, 3\), expected \(4, 4\)",
        ),
        (
            lambda f: f.__delitem__(f"{SPECIMENS[0]}/vol-landmarks"),
            f"/{SPECIMENS[0]}/vol-landmarks",
            "group missing",
        ),
        (
            lambda f: f.__setitem__(f"{SPECIMENS[0]}/vol-landmarks/XYZ-l", np.zeros((3, 1))),
            f"/{SPECIMENS[0]}/vol-landmarks",
            r"\['XYZ-l'\] are not in landmarks.names",
        ),
        (
            lambda f: f.__delitem__(f"{SPECIMENS[0]}/projections/002/gt-landmarks"),
            f"/{SPECIMENS[0]}/projections/002/gt-landmarks",
            "group missing",
        ),
        (
            lambda f: f.__setitem__(
                f"{SPECIMENS[0]}/projections/002/gt-landmarks/XYZ-l", np.zeros((2, 1))
            ),
            f"/{SPECIMENS[0]}/projections/002/gt-landmarks",
            r"\['XYZ-l'\] are not in landmarks.names",
        ),
    ],
)
def test_bad_files_name_the_group(tmp_path, damage, where, problem):
    path = write_deepfluoro(tmp_path / "bad.h5", n_specimens=1)
    with h5py.File(path, "a") as f:
        damage(f)
    with pytest.raises(InputError, match=f"bad.h5:{where}: .*{problem}"):
        _import(path, SPECIMENS[0])
    out = tmp_path / "ct.nii.gz"
    r = xrayfactory_cli(
        "import-deepfluoro", "--file", str(path), "--specimen", SPECIMENS[0], "--subject", "s1",
        "--out-ct", str(out), "--out-seg", str(tmp_path / "seg.nii.gz"),
        "--out-landmarks", str(tmp_path / "l.csv"), "--out-images", str(tmp_path / "real.h5"),
        "--out-labels", str(tmp_path / "labels.tsv"),
        "--settings", _settings(),
    )  # fmt: skip
    assert r.returncode != 0 and where in r.stderr
    assert not out.exists()  # nothing partial


PAPER = REPO / "config" / "deepfluoro.yaml"


def _on_fixture(tmp_path, fixture_file, overrides: dict):
    """A working directory whose config is the demo's with `overrides` (a DeepFluoro study on
    the fixture file)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    workdir = study_dir(tmp_path, config)
    extra = workdir / "fixture.yaml"
    extra.write_text(yaml.safe_dump({"deepfluoro": {"file": str(fixture_file)}, **overrides}))
    return workdir, extra


def test_paper_configuration_plans_the_whole_study_on_a_fixture(fixture_file, tmp_path):
    workdir, extra = _on_fixture(tmp_path, fixture_file, {})
    jobs = planned_jobs(workdir, "--configfile", str(PAPER), str(extra))
    assert "download_deepfluoro" not in jobs and "demo_subject" not in jobs  # the file is there
    assert (
        jobs["import_deepfluoro"] == 6 and jobs["render_imageset"] == 6
    )  # drr only: real is imported
    # four arms, four controls, 14 sweep points and one recipe, 6 folds x 3 seeds
    assert jobs["train_detector"] == jobs["evaluate_detector"] == 6 * (8 + 14 + 1) * 3
    # synth2d@5000: 20 shards of 250 per fold; synth3d@5000: one part of 5 volumes x 1,000,
    # and so synth3d_nolatent's 250 images
    assert jobs["render_synth3d"] == 6 * 5 * 2 and jobs["sample_synth2d"] == 6 * 20
    assert jobs["sample_synth3d"] == jobs["sample_synth3d_nolatent"] == 6
    assert jobs["render_drr_grid"] == 6 and jobs["render_drr_recon"] == 6 * 5
    assert jobs["resize_real"] == 6 and jobs["realism"] == 6  # one per fold, every arm
    assert sum(jobs.values()) <= 1200


def test_download_verifies_the_published_checksum_unless_one_is_pinned(tmp_path):
    """Without the file, the study starts with the download; its command checks the archive
    against the checksum the JHU archive publishes, or against a pinned sha256."""
    absent = tmp_path / "absent" / "ipcai_2020_full_res_data.h5"
    for pinned, flag in [(None, "--checksum-url"), ("ab" * 32, f"--sha256 {'ab' * 32}")]:
        workdir, extra = _on_fixture(tmp_path / str(pinned), absent, {})
        extra.write_text(yaml.safe_dump({"deepfluoro": {"file": str(absent), "sha256": pinned}}))
        r = run(workdir, str(absent), "-n", "-p", "--configfile", str(PAPER), str(extra))
        assert r.returncode == 0, r.stderr + r.stdout
        command = next(line for line in r.stdout.splitlines() if "download-deepfluoro" in line)
        assert flag in command
        if pinned is None:
            assert "'http://archive.data.jhu.edu/api/datasets/:persistentId/versions/" in command
        else:
            assert "--checksum-url" not in command


@pytest.mark.slow
def test_tiny_study_on_the_fixture(fixture_file, tmp_path):
    """The whole study on three fixture specimens with tiny settings: DeepFluoro's real X-rays
    (from the preprocessed variant) are the real arm and the test images, its CTs feed the drr
    and synth3d arms."""
    ds = write_preprocessed(fixture_file, tmp_path / "ipcai_2020_ds_4x.h5")
    tiny = load_config("deepfluoro_tiny", TINY)
    tiny["deepfluoro"] |= {"file": str(fixture_file), "preprocessed": str(ds)}
    workdir = study_dir(tmp_path / "study", tiny)
    r = run(workdir, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    res = workdir / "results"
    real = read_imageset(res / "imagesets" / "real" / f"{SPECIMENS[1]}.h5")
    assert real.images.shape == (3, 56, 56) and not real.attrs["proxy"]
    drr = read_imageset(res / "imagesets" / "drr" / f"{SPECIMENS[1]}.h5")
    assert drr.images.shape == (3, 56, 56) and drr.attrs["pixel_spacing_mm"] == pytest.approx(7.76)
    metrics = pd.read_csv(res / "report" / "metrics.csv")
    assert metrics.arm.tolist() == ["baseline", "real", "drr", "synth3d", "synth2d"]
    assert (metrics.n_images == 3).all()  # the projections of fold 0's test specimen
    assert "proxy" not in (res / "report" / "metrics.md").read_text()
