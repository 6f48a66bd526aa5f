"""The cohort check: every subject read and cross-checked before any job, every problem of
every subject reported at once, nothing written for a bad cohort; and the workflow runs no
other job before it passes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import CT_PATH, NAMES, SEG_PATH, xrayfactory_cli
from tests.workflow_runs import TINY, run, study_dir
from xrayfactory.cohort.check import SubjectFiles, check_cohort
from xrayfactory.cohort.volumes import load_ct, save_nifti
from xrayfactory.core.errors import InputError

GROUPS = {"pelvis": [25, 26, 77, 78], "femur": [75, 76]}


def _landmarks(path, ct_path=CT_PATH, rows=None) -> str:
    """Every landmark at the CT's centre (or the given rows)."""
    ct = load_ct(ct_path)
    centre = ct.voxel_to_world((np.asarray(ct.shape)[None] - 1) / 2)[0]
    lines = rows or [f"{n},{centre[0]:.1f},{centre[1]:.1f},{centre[2]:.1f}" for n in NAMES]
    path.write_text("name,x,y,z\n" + "\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three subjects: s0 good, s1 with a label map on another grid and a non-numeric
    landmark, s2 with a label map missing the femur labels and a duplicated landmark."""
    d = tmp_path_factory.mktemp("cohort")
    ct = load_ct(CT_PATH)
    small = d / "small_seg.nii.gz"
    save_nifti(small, np.zeros((8, 8, 8), np.uint8), ct.affine)
    seg = np.asarray(nib.load(SEG_PATH).dataobj)
    no_femur = d / "no_femur.nii.gz"
    save_nifti(no_femur, np.where(np.isin(seg, [75, 76]), 0, seg).astype(np.uint8), ct.affine)
    good = _landmarks(d / "good.csv")
    rows = open(good).read().splitlines()[1:]
    name, _, y, z = rows[0].split(",")
    bad = _landmarks(d / "bad.csv", rows=[f"{name},1x,{y},{z}", *rows[1:]])
    dup = _landmarks(d / "dup.csv", rows=[*rows, rows[2]])
    return d, [
        SubjectFiles("s0", str(CT_PATH), str(SEG_PATH), good),
        SubjectFiles("s1", str(CT_PATH), str(small), bad),
        SubjectFiles("s2", str(CT_PATH), str(no_femur), dup),
    ]


def test_every_problem_of_every_subject_at_once(cohort):
    d, subjects = cohort
    out = d / "checked.csv"
    with pytest.raises(InputError) as e:
        check_cohort(subjects, NAMES, GROUPS, out)
    text = str(e.value)
    assert text.startswith("cohort: 4 problem(s) in 2 of 3 subject(s)")
    assert f"subject s1: {d / 'small_seg.nii.gz'}: segmentation grid (8, 8, 8) differs" in text
    assert f"subject s1: {d / 'bad.csv'}: row 2 (FH-l): non-numeric coordinate" in text
    assert f"subject s2: {d / 'no_femur.nii.gz'}: no voxel of label group femur" in text
    assert f"subject s2: {d / 'dup.csv'}: landmark ASIS-l listed more than once" in text
    assert "subject s0" not in text and not out.exists()


def test_a_good_cohort_is_summarised(cohort):
    d, subjects = cohort
    out = d / "good.csv.out"
    check_cohort(subjects[:1], NAMES, GROUPS, out)
    table = pd.read_csv(out)
    assert table.subject.tolist() == ["s0"] and "77" in table.labels[0].split()


def test_cli_reports_without_a_traceback(cohort, tmp_path):
    _, subjects = cohort
    args = ["check-cohort", "--out", str(tmp_path / "c.csv"), "--subjects", "s1"]
    args += ["--ct", subjects[1].ct, "--seg", subjects[1].seg, "--landmarks", subjects[1].landmarks]
    r = xrayfactory_cli(*args, "--settings", json.dumps({"names": NAMES, "groups": GROUPS}))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: cohort: 2 problem(s) in 1 of 1 subject(s)" in r.stderr


def test_the_workflow_stops_at_the_check_before_any_other_job(cohort, tmp_path):
    """A user sheet with a label map on another grid: the check fails first; no image set,
    QC figure or model is made from the cohort."""
    _, subjects = cohort
    sheet = tmp_path / "subjects.tsv"
    lines = ["subject\tct\tsegmentation\tlandmarks"]
    lines += [f"{s.subject}\t{s.ct}\t{s.seg}\t{s.landmarks}" for s in subjects[:2]]
    lines.append(f"s3\t{subjects[0].ct}\t{subjects[0].seg}\t{subjects[0].landmarks}")
    sheet.write_text("\n".join(lines) + "\n")
    config = {**TINY, "cohort": {"source": "sheet", "sheet": str(sheet)}}
    workdir = study_dir(tmp_path / "study", config)
    r = run(workdir, "--cores", "2", "--keep-going")
    assert r.returncode != 0
    log = (workdir / "logs" / "cohort" / "check_cohort.log").read_text()
    assert "error: cohort: 2 problem(s) in 1 of 3 subject(s)" in log
    made = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert {p.name for p in made} <= {"folds.csv"}, made
