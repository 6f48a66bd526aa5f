"""Obtain input files from a local mirror or by download, always verifying sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from xrayfactory.atomic import atomic_path
from xrayfactory.errors import InputError

log = logging.getLogger("xrayfactory")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _obtain(name: str, tmp: Path, *, mirror: str | None, url: str) -> str:
    """Copy `name` from the `mirror` folder when it exists, else download `url` into `tmp`;
    returns where it came from."""
    if mirror and Path(mirror).is_dir():
        src = Path(mirror) / name
        if not src.exists():
            raise InputError(src, "not in the configured mirror folder")
        log.info("copying %s from mirror %s", name, mirror)
        shutil.copyfile(src, tmp)
        return str(src)
    if mirror:
        log.warning("mirror folder %s not found: downloading %s instead", mirror, name)
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise InputError(url, f"download failed: {e}") from e
    return url


def _verify(path: Path, expected_sha256: str, origin: str) -> None:
    got = sha256(path)
    if got != expected_sha256:
        raise InputError(origin, f"sha256 mismatch: expected {expected_sha256}, got {got}")


def fetch(
    name: str, expected_sha256: str, dest: str | os.PathLike, *, mirror: str | None, url: str
) -> None:
    """Copy `name` from `mirror` when that folder exists, else download `url`/`name`; the file
    is moved to `dest` only when its checksum matches."""
    with atomic_path(Path(dest)) as tmp:
        origin = _obtain(name, tmp, mirror=mirror, url=f"{url.rstrip('/')}/{name}")
        _verify(tmp, expected_sha256, origin)


def fetch_archive(
    archive: str,
    expected_sha256: str,
    member: str,
    dest: str | os.PathLike,
    *,
    mirror: str | None,
    url: str,
) -> None:
    """Obtain the zip `archive` (mirror folder, else `url`), verify its sha256, and extract
    `member` to `dest`; nothing is left at `dest` unless all of that succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as work:  # the archive is not kept
        zipped = Path(work) / archive
        _verify(zipped, expected_sha256, _obtain(archive, zipped, mirror=mirror, url=url))
        with zipfile.ZipFile(zipped) as z, atomic_path(dest) as tmp:
            names = {Path(n).name: n for n in z.namelist()}
            if member not in names:
                raise InputError(archive, f"{member} not in the archive ({sorted(names)})")
            with z.open(names[member]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
