"""Bad input: a clear error naming the file and the problem, non-zero exit, no partial output."""

import gzip
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import CT_PATH, LABELS, NAMES, SEG_PATH
from xrayfactory.cohort.volumes import load_ct, load_segmentation
from xrayfactory.core.errors import InputError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xrayfactory", *args], capture_output=True, text=True
    )


def _landmarks_cli(ct, seg, out) -> subprocess.CompletedProcess:
    import json

    return _cli(
        "demo-landmarks",
        "--ct",
        str(ct),
        "--seg",
        str(seg),
        "--out",
        str(out),
        "--settings",
        json.dumps({"labels": LABELS, "names": NAMES}),
    )


def test_truncated_nifti(tmp_path):
    bad = tmp_path / "ct.nii.gz"
    data = CT_PATH.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="ct.nii.gz: not a readable NIfTI file"):
        load_ct(bad)
    out = tmp_path / "lm.csv"
    r = _landmarks_cli(bad, SEG_PATH, out)
    assert r.returncode == 2
    assert f"error: {bad}: not a readable NIfTI file" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".lm.csv*"))


def test_corrupt_nifti(tmp_path):
    bad = tmp_path / "ct.nii.gz"
    bad.write_bytes(gzip.compress(b"definitely not a nifti header" * 20))
    with pytest.raises(InputError, match="not a readable NIfTI file"):
        load_ct(bad)


def test_nan_voxels(tmp_path):
    img = nib.load(CT_PATH)
    data = np.asarray(img.dataobj).astype(np.float32)
    data[10, 10, 10] = np.nan
    path = tmp_path / "nan_ct.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), path)
    with pytest.raises(InputError, match="nan_ct.nii.gz: 1 voxels are NaN or infinite"):
        load_ct(path)


def test_segmentation_grid_and_affine_must_match_ct(tmp_path):
    ct = load_ct(CT_PATH)
    seg = nib.load(SEG_PATH)
    cropped = tmp_path / "cropped_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(seg.dataobj)[:-1], seg.affine), cropped)
    with pytest.raises(
        InputError,
        match=r"cropped_seg.nii.gz: segmentation grid \(121, 101, 112\) differs from the CT",
    ):
        load_segmentation(cropped, ct, CT_PATH)
    shifted = tmp_path / "shifted_seg.nii.gz"
    aff = seg.affine.copy()
    aff[0, 3] += 5
    nib.save(nib.Nifti1Image(np.asarray(seg.dataobj), aff), shifted)
    with pytest.raises(
        InputError, match="shifted_seg.nii.gz: segmentation affine differs from the CT"
    ):
        load_segmentation(shifted, ct, CT_PATH)
    out = tmp_path / "lm.csv"
    r = _landmarks_cli(CT_PATH, shifted, out)
    assert r.returncode == 2 and "segmentation affine differs" in r.stderr and not out.exists()


def test_missing_label_via_cli(tmp_path):
    seg = nib.load(SEG_PATH)
    data = np.asarray(seg.dataobj).copy()
    data[data == 77] = 0
    path = tmp_path / "no_hip.nii.gz"
    nib.save(nib.Nifti1Image(data, seg.affine), path)
    out = tmp_path / "lm.csv"
    r = _landmarks_cli(CT_PATH, path, out)
    assert r.returncode == 2
    assert f"{path}: missing label hip_left (77)" in r.stderr
    assert not out.exists()


def test_landmark_outside_volume_via_cli(tmp_path):
    import json

    lm = tmp_path / "landmarks.csv"
    lm.write_text(
        "name,x,y,z\n" + "\n".join(f"{n},0,150,200" for n in NAMES[:-1]) + "\nL5,0,150,9000\n"
    )
    out = tmp_path / "real.h5"
    settings = {
        "seed": 0,
        "device": "cpu",
        "names": NAMES,
        "carm": {"downsample": 48},
        "views": {},
        "n_images": 1,
        "acquisition": {},
    }
    r = _cli(
        "render-imageset",
        "--arm",
        "real",
        "--subject",
        "s",
        "--ct",
        str(CT_PATH),
        "--landmarks",
        str(lm),
        "--out",
        str(out),
        "--settings",
        json.dumps(settings),
    )
    assert r.returncode == 2
    assert f"{lm}: landmark L5 at" in r.stderr and "lies outside the volume" in r.stderr
    assert not out.exists()


def test_outputs_already_computed_are_kept_when_a_step_fails(tmp_path):
    """A failing rerun must not clobber the previous good output."""
    out = tmp_path / "lm.csv"
    shutil.copy(CT_PATH, tmp_path / "ct.nii.gz")
    assert _landmarks_cli(tmp_path / "ct.nii.gz", SEG_PATH, out).returncode == 0
    good = out.read_text()
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b broken")
    assert _landmarks_cli(tmp_path / "ct.nii.gz", tmp_path / "bad.nii.gz", out).returncode == 2
    assert out.read_text() == good


def test_non_numeric_landmark_is_a_message_not_a_traceback(tmp_path):
    """A landmark file with a non-numeric coordinate (once a pandas traceback)."""
    import json

    lm = tmp_path / "landmarks.csv"
    lm.write_text(
        "name,x,y,z\n" + "\n".join(f"{n},0,150,200" for n in NAMES[:-1]) + "\nL5,0,1o0,0\n"
    )
    settings = {"names": NAMES}
    out = tmp_path / "qc.png"
    r = _cli(
        "cohort-qc", "--ct", str(CT_PATH), "--seg", str(SEG_PATH), "--landmarks", str(lm),
        "--subjects", "s", "--out", str(out), "--settings", json.dumps(settings),
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: {lm}: row 10 (L5): non-numeric coordinate in 0, 1o0, 0" in r.stderr
    assert not out.exists()
