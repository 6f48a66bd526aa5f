"""Obtain input files from a local mirror or by download, always verifying a checksum."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from xrayfactory.core.atomic import atomic_path
from xrayfactory.core.errors import InputError
from xrayfactory.core.progress import Progress

log = logging.getLogger("xrayfactory")

# Dataverse's checksum types (its `:FileFixityChecksumAlgorithm` setting) -> hashlib names
DATAVERSE_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
BLOCK = 1 << 20


@dataclass(frozen=True)
class Checksum:
    """The digest a file must have: `algorithm` is a hashlib name, `source` says who vouches
    for it (a config key, a URL), `size` is the byte count when the source states one."""

    algorithm: str
    value: str
    source: str
    size: int | None = None


def _digests(path: str | os.PathLike, algorithms: list[str]) -> dict[str, str]:
    """Several digests of one file in a single read."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def published_checksum(listing_url: str, *, url: str, filename: str) -> Checksum:
    """The checksum a Dataverse archive publishes for the file behind `url`: read from the
    dataset's file listing (native API `datasets/:persistentId/versions/<v>/files`), matched by
    the file's persistent id in `url`, else by `filename`."""
    try:
        with urllib.request.urlopen(listing_url, timeout=60) as r:
            listing = json.load(r)
        files = listing["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(listing_url, f"could not read the published file listing: {e}") from e
    pid = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("persistentId", [None])[0]
    entries = [f.get("dataFile", {}) for f in files if isinstance(f, dict)]
    match = [e for e in entries if pid and e.get("persistentId") == pid] or [
        e for e in entries if e.get("filename") == filename
    ]
    if len(match) != 1:
        names = sorted(str(e.get("filename")) for e in entries)
        raise InputError(
            listing_url, f"no single file with id {pid} or name {filename} (files: {names})"
        )
    found = match[0]
    checksum = found.get("checksum") or {"type": "MD5", "value": found.get("md5")}
    algorithm = DATAVERSE_ALGORITHMS.get(checksum.get("type"))
    if algorithm is None or not checksum.get("value"):
        raise InputError(listing_url, f"{found.get('filename')}: no usable checksum ({checksum})")
    return Checksum(algorithm, checksum["value"].lower(), listing_url, found.get("filesize"))


def _download(url: str, dest: Path) -> None:
    """Stream `url` to `dest`, logging progress (MB, rate, ETA) when the size is known."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            progress = Progress(max(total // BLOCK, 1), f"download {url}", unit="MB")
            got = 0
            for block in iter(lambda: r.read(BLOCK), b""):
                f.write(block)
                if total:
                    progress.update((got + len(block)) // BLOCK - got // BLOCK)
                got += len(block)
    except OSError as e:
        raise InputError(url, f"download failed: {e}") from e


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
    _download(url, tmp)
    return url


def _verify(path: Path, expected: Checksum, origin: str) -> None:
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise InputError(origin, f"{size} bytes, {expected.source} states {expected.size}")
    got = _digests(path, sorted({expected.algorithm, "sha256"}))
    if got[expected.algorithm] != expected.value:
        raise InputError(
            origin,
            f"{expected.algorithm} mismatch: expected {expected.value} ({expected.source}), "
            f"got {got[expected.algorithm]}",
        )
    log.info(
        "%s: %s verified against %s; sha256 %s",
        origin,
        expected.algorithm,
        expected.source,
        got["sha256"],
    )


def fetch(
    name: str, expected_sha256: str, dest: str | os.PathLike, *, mirror: str | None, url: str
) -> None:
    """Copy `name` from `mirror` when that folder exists, else download `url`/`name`; the file
    is moved to `dest` only when its checksum matches."""
    with atomic_path(Path(dest)) as tmp:
        origin = _obtain(name, tmp, mirror=mirror, url=f"{url.rstrip('/')}/{name}")
        _verify(tmp, Checksum("sha256", expected_sha256, "the configured sha256"), origin)


def fetch_archive(
    archive: str,
    expected: Checksum,
    member: str,
    dest: str | os.PathLike,
    *,
    mirror: str | None,
    url: str,
) -> None:
    """Obtain the zip `archive` (mirror folder, else `url`), verify its checksum, and extract
    `member` to `dest`; nothing is left at `dest` unless all of that succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as work:  # the archive is not kept
        zipped = Path(work) / archive
        _verify(zipped, expected, _obtain(archive, zipped, mirror=mirror, url=url))
        with zipfile.ZipFile(zipped) as z, atomic_path(dest) as tmp:
            names = {Path(n).name: n for n in z.namelist()}
            if member not in names:
                raise InputError(archive, f"{member} not in the archive ({sorted(names)})")
            with z.open(names[member]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
