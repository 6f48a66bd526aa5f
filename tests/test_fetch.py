import hashlib
import io
import urllib.request
import zipfile

import pytest

from xrayfactory.errors import InputError
from xrayfactory.fetch import fetch, fetch_archive


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_mirror_copy_verifies_checksum(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.nii.gz").write_bytes(b"payload")
    fetch(
        "a.nii.gz",
        _digest(b"payload"),
        tmp_path / "out" / "a.nii.gz",
        mirror=str(mirror),
        url="unused",
    )
    assert (tmp_path / "out" / "a.nii.gz").read_bytes() == b"payload"
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch(
            "a.nii.gz", "0" * 64, tmp_path / "out2" / "a.nii.gz", mirror=str(mirror), url="unused"
        )
    assert not (tmp_path / "out2" / "a.nii.gz").exists()


def test_download_when_no_mirror(tmp_path, monkeypatch):
    seen = []

    def fake_urlopen(url, timeout):
        seen.append(url)
        return io.BytesIO(b"remote bytes")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    fetch(
        "b.nii.gz",
        _digest(b"remote bytes"),
        tmp_path / "b.nii.gz",
        mirror=str(tmp_path / "absent"),
        url="https://example.org/files/",
    )
    assert seen == ["https://example.org/files/b.nii.gz"]
    assert (tmp_path / "b.nii.gz").read_bytes() == b"remote bytes"
    with pytest.raises(InputError, match="https://example.org/files/c.nii.gz: sha256 mismatch"):
        fetch(
            "c.nii.gz",
            "1" * 64,
            tmp_path / "c.nii.gz",
            mirror=None,
            url="https://example.org/files",
        )
    assert not (tmp_path / "c.nii.gz").exists()


def test_archive_from_mirror_is_verified_then_extracted(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "data.zip", "w") as z:
        z.writestr("data/big.h5", b"hdf5 bytes")
    digest = _digest((mirror / "data.zip").read_bytes())
    out = tmp_path / "res" / "big.h5"
    fetch_archive("data.zip", digest, "big.h5", out, mirror=str(mirror), url="unused")
    assert out.read_bytes() == b"hdf5 bytes"
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.h5"]  # archive not kept
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch_archive(
            "data.zip", "0" * 64, "big.h5", tmp_path / "x" / "big.h5", mirror=str(mirror), url="u"
        )
    with pytest.raises(InputError, match=r"other.h5 not in the archive \(\['big.h5'\]\)"):
        fetch_archive(
            "data.zip", digest, "other.h5", tmp_path / "y" / "o.h5", mirror=str(mirror), url="u"
        )
    assert not list((tmp_path / "x").iterdir()) and not list((tmp_path / "y").iterdir())
