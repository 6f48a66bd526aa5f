"""Obtain input files from a local mirror or by download, always verifying sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
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


def fetch(
    name: str, expected_sha256: str, dest: str | os.PathLike, *, mirror: str | None, url: str
) -> None:
    """Copy `name` from `mirror` when that folder exists, else download `url`/`name`; the file
    is moved to `dest` only when its checksum matches."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if mirror and Path(mirror).is_dir():
            src = Path(mirror) / name
            if not src.exists():
                raise InputError(src, "not in the configured mirror folder")
            log.info("copying %s from mirror %s", name, mirror)
            shutil.copyfile(src, tmp)
            origin = str(src)
        else:
            if mirror:
                log.warning("mirror folder %s not found: downloading %s instead", mirror, name)
            origin = f"{url.rstrip('/')}/{name}"
            log.info("downloading %s", origin)
            try:
                with urllib.request.urlopen(origin, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                raise InputError(origin, f"download failed: {e}") from e
        got = sha256(tmp)
        if got != expected_sha256:
            raise InputError(origin, f"sha256 mismatch: expected {expected_sha256}, got {got}")
