import hashlib
import http.server
import io
import json
import re
import threading
import zipfile

import pytest

from xrayfactory.cli import main
from xrayfactory.core.errors import InputError
from xrayfactory.core.fetch import Checksum, fetch, fetch_archive


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


@pytest.fixture
def server():
    """A local HTTP server answering GET with `routes[path_and_query]` (404 otherwise)."""
    routes: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", routes
    httpd.shutdown()


def test_download_when_no_mirror(tmp_path, server):
    base, routes = server
    routes["/files/b.nii.gz"] = b"remote bytes"
    routes["/files/c.nii.gz"] = b"other bytes"
    fetch(
        "b.nii.gz",
        _digest(b"remote bytes"),
        tmp_path / "b.nii.gz",
        mirror=str(tmp_path / "absent"),
        url=f"{base}/files/",
    )
    assert (tmp_path / "b.nii.gz").read_bytes() == b"remote bytes"
    with pytest.raises(InputError, match=f"{base}/files/c.nii.gz: sha256 mismatch"):
        fetch("c.nii.gz", "1" * 64, tmp_path / "c.nii.gz", mirror=None, url=f"{base}/files")
    with pytest.raises(InputError, match=f"{base}/files/d.nii.gz: download failed: HTTP Error 404"):
        fetch("d.nii.gz", "1" * 64, tmp_path / "d.nii.gz", mirror=None, url=f"{base}/files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nii.gz"]


def test_archive_from_mirror_is_verified_then_extracted(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "data.zip", "w") as z:
        z.writestr("data/big.h5", b"hdf5 bytes")
    digest = _digest((mirror / "data.zip").read_bytes())
    out = tmp_path / "res" / "big.h5"
    pinned = Checksum("sha256", digest, "pinned")
    fetch_archive("data.zip", pinned, "big.h5", out, mirror=str(mirror), url="unused")
    assert out.read_bytes() == b"hdf5 bytes"
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.h5"]  # archive not kept
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch_archive(
            "data.zip",
            Checksum("sha256", "0" * 64, "pinned"),
            "big.h5",
            tmp_path / "x" / "big.h5",
            mirror=str(mirror),
            url="u",
        )
    with pytest.raises(InputError, match=r"other.h5 not in the archive \(\['big.h5'\]\)"):
        fetch_archive(
            "data.zip", pinned, "other.h5", tmp_path / "y" / "o.h5", mirror=str(mirror), url="u"
        )
    assert not list((tmp_path / "x").iterdir()) and not list((tmp_path / "y").iterdir())


PID = "doi:10.5072/FK2/ABCDEF/XYZ"


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"data/{member}", data)
    return buf.getvalue()


def _listing(*files: tuple[str, str, bytes, str]) -> bytes:
    """A Dataverse file listing: (persistent id, file name, content, checksum type) per file."""
    algorithms = {"MD5": "md5", "SHA-1": "sha1", "SHA-512": "sha512"}
    return json.dumps(
        {
            "status": "OK",
            "data": [
                {
                    "label": name,
                    "dataFile": {
                        "persistentId": pid,
                        "filename": name,
                        "filesize": len(data),
                        "checksum": {
                            "type": kind,
                            "value": hashlib.new(algorithms[kind], data).hexdigest(),
                        },
                    },
                }
                for pid, name, data, kind in files
            ],
        }
    ).encode()


def _fetch_archive(tmp_path, base, *extra):
    """`python -m xrayfactory download-deepfluoro` of the dataset file `PID` from the server."""
    return main(
        [
            "download-deepfluoro", "--archive", "full.zip", "--member", "full.h5",
            "--url", f"{base}/api/access/datafile/:persistentId/?persistentId={PID}",
            "--out", str(tmp_path / "res" / "full.h5"), *extra,
        ]
    )  # fmt: skip


def test_download_is_verified_against_the_published_checksum(tmp_path, server, caplog):
    base, routes = server
    archive = _zip("full.h5", b"specimens")
    routes[f"/api/access/datafile/:persistentId/?persistentId={PID}"] = archive
    routes["/files"] = _listing(
        ("doi:10.5072/FK2/ABCDEF/OTHER", "full.zip", b"another file of that name", "SHA-1"),
        (PID, "served-name.zip", archive, "MD5"),
    )
    caplog.set_level("INFO")
    assert _fetch_archive(tmp_path, base, "--checksum-url", f"{base}/files") == 0
    assert (tmp_path / "res" / "full.h5").read_bytes() == b"specimens"
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["full.h5"]
    assert f"md5 verified against {base}/files; sha256 {_digest(archive)}" in caplog.text
    # no persistent id in the URL: the file is found by name
    routes["/plain/full.zip"] = archive
    routes["/files2"] = _listing(("", "full.zip", archive, "SHA-512"))
    out = tmp_path / "plain.h5"
    assert main(["download-deepfluoro", "--archive", "full.zip", "--member", "full.h5",
                 "--url", f"{base}/plain/full.zip", "--out", str(out),
                 "--checksum-url", f"{base}/files2"]) == 0  # fmt: skip
    assert out.read_bytes() == b"specimens"


def test_published_checksum_problems_stop_before_anything_is_written(tmp_path, server, capsys):
    base, routes = server
    archive = _zip("full.h5", b"specimens")
    routes[f"/api/access/datafile/:persistentId/?persistentId={PID}"] = archive
    routes["/changed"] = _listing((PID, "full.zip", archive[:-1] + b"!", "MD5"))
    routes["/bigger"] = _listing((PID, "full.zip", archive + b"!", "MD5"))
    routes["/other"] = _listing(("doi:x", "a.zip", b"a", "MD5"), ("doi:y", "b.zip", b"b", "MD5"))
    routes["/html"] = b"<html>maintenance</html>"
    cases = {
        "/changed": "md5 mismatch: expected",
        "/bigger": f"{len(archive)} bytes, {base}/bigger states {len(archive) + 1}",
        "/other": f"no single file with id {PID} or name full.zip .*'a.zip', 'b.zip'",
        "/html": "could not read the published file listing",
        "/missing": "could not read the published file listing: HTTP Error 404",
    }
    for route, problem in cases.items():
        assert _fetch_archive(tmp_path, base, "--checksum-url", f"{base}{route}") == 2
        err = capsys.readouterr().err
        assert re.search(problem, err), (route, err)
        if route in ("/other", "/html", "/missing"):  # before any download
            assert f"{base}{route}: " in err and "pin the sha256 (deepfluoro.sha256)" in err
        assert not (tmp_path / "res").exists() or not list((tmp_path / "res").iterdir())
    assert _fetch_archive(tmp_path, base) == 2
    assert "deepfluoro.checksum_url: both unset" in capsys.readouterr().err
    # a pinned sha256 is used as it is, without the listing
    assert _fetch_archive(tmp_path, base, "--sha256", _digest(archive), "--checksum-url", "x") == 0
