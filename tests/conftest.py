"""Shared fixtures: the real demo CT from ../shared/data and small synthetic volumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xrayfactory.cohort.volumes import Volume, load_ct, load_segmentation
from xrayfactory.imaging.imageset import ImageSet, write_imageset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XRAYFACTORY_SHARED", REPO.parent / "shared"))
DEMO_DIR = SHARED / "data" / "pelvis-ct"
CT_PATH = DEMO_DIR / "example_ct.nii.gz"
SEG_PATH = DEMO_DIR / "example_seg_fast_force_split.nii.gz"
LABELS = {"hip_left": 77, "hip_right": 78, "femur_left": 75, "femur_right": 76, "vertebra_L5": 27}
# A CLI step in the tests takes seconds to a minute; the limit only stops a hung one.
CLI_LIMIT_S = 1800
NAMES = ["FH-l", "FH-r", "ASIS-l", "ASIS-r", "PSIS-l", "PSIS-r", "SPS-l", "SPS-r", "L5"]


def pytest_collection_modifyitems(config, items):
    if not CT_PATH.exists():
        skip = pytest.mark.skip(reason=f"demo data not found at {DEMO_DIR}")
        for item in items:
            if "demo_ct" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_ct() -> tuple[Volume, Volume]:
    ct = load_ct(CT_PATH)
    return ct, load_segmentation(SEG_PATH, ct, CT_PATH)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The tiny study (tests/configs/tiny.yaml), run to the end once, uninterrupted and without
    containers, for the end-to-end tests; its metrics are kept apart in reference_metrics.csv
    (tests change the study and restore it, but may fail midway)."""
    from tests.workflow_runs import TINY, run, study_dir

    workdir = study_dir(tmp_path_factory.mktemp("tiny"), TINY)
    r = run(workdir, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.copy(workdir / "results" / "report" / "metrics.csv", workdir / "reference_metrics.csv")
    return workdir


def sphere_volume(
    centre_mm: np.ndarray, radius_mm: float, *, shape=(64, 64, 64), spacing=2.0, value=1.0
) -> Volume:
    """A volume centred on the world origin with one dense sphere (a 'bead')."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -spacing * (np.asarray(shape) - 1) / 2
    vol = Volume(np.zeros(shape, np.float32), affine)
    ijk = np.indices(shape).reshape(3, -1).T
    inside = np.linalg.norm(vol.voxel_to_world(ijk) - centre_mm, axis=1) <= radius_mm
    vol.data.reshape(-1)[inside] = value
    return vol


def write_blob_shard(
    path: Path, subject: str, names: list[str], landmarks: np.ndarray, size: int, width: float
) -> Path:
    """A proxy-real shard of dark images with a Gaussian blob (2 sd^2 = `width`) at each
    landmark (N, L, 2): learnable by a detector or generator in seconds."""
    n = len(landmarks)
    r, c = np.mgrid[0:size, 0:size]
    images = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for col, row in landmarks[i]:
            images[i] += np.exp(-((c - col) ** 2 + (r - row) ** 2) / width)
    s = ImageSet(
        images=images,
        landmarks=landmarks.astype(np.float32),
        visible=np.ones((n, len(names)), bool),
        projection=np.zeros((n, 3, 4)),
        subject=np.array([subject] * n),
        view=np.zeros((n, 6)),
        attrs={
            "arm": "real",
            "landmark_names": names,
            "pixel_spacing_mm": 1.0,
            "magnification": 2.0,
            "proxy": True,
        },
    )
    write_imageset(path, s)
    return path


def sigterm_after_checkpoint(proc: subprocess.Popen, last: Path) -> str:
    """SIGTERM a training process once it has written its resumable checkpoint `last`; check
    that it exits with 143 leaving `last`, and return its stderr."""
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert last.exists()
    return err


def xrayfactory_cli(*args: str, wait: bool = True):
    """Run `python -m xrayfactory --threads 1 ARGS` (or start it, with wait=False)."""
    cmd = [sys.executable, "-m", "xrayfactory", "--threads", "1", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_LIMIT_S)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
