"""Tests for dataset downloads, served from a loopback HTTP server in a thread."""

from __future__ import annotations

import functools
import hashlib
import io
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from edgeadapt.sdk.datasets import DatasetError, download_file, download_omniglot, load_omniglot


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _omniglot_zip_bytes() -> bytes:
    """A tiny images_background.zip: one alphabet, one character, two blank-ish drawings."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for d in (1, 2):
            png = io.BytesIO()
            Image.new("1", (105, 105), 1).save(png, format="PNG")
            archive.writestr(f"images_background/Latin/character01/0001_{d:02d}.png", png.getvalue())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes, str]]:
    """(base URL, file bytes, sha256) of images_background.zip served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    data = _omniglot_zip_bytes()
    (root / "images_background.zip").write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", data, hashlib.sha256(data).hexdigest()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_verifies_and_writes(served: tuple[str, bytes, str], tmp_path: Path) -> None:
    base, data, sha = served
    dest = download_file(f"{base}/images_background.zip", tmp_path / "sub" / "a.zip", sha, timeout=10)
    assert dest == tmp_path / "sub" / "a.zip" and dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["a.zip"]  # no temp file left


def test_sha_mismatch_leaves_no_file(served: tuple[str, bytes, str], tmp_path: Path) -> None:
    base, _, sha = served
    wrong = "0" * 64
    with pytest.raises(DatasetError) as info:
        download_file(f"{base}/images_background.zip", tmp_path / "a.zip", wrong, timeout=10)
    assert wrong in str(info.value) and sha in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_http_404_names_url(served: tuple[str, bytes, str], tmp_path: Path) -> None:
    base, _, sha = served
    url = f"{base}/missing.zip"
    with pytest.raises(DatasetError, match="404") as info:
        download_file(url, tmp_path / "a.zip", sha, timeout=10)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_right_hash_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "a.zip"
    dest.write_bytes(b"already here")
    sha = hashlib.sha256(b"already here").hexdigest()
    # the URL is unreachable on purpose: nothing may be fetched
    assert download_file("http://127.0.0.1:9/none.zip", dest, sha.upper(), timeout=1) == dest
    assert dest.read_bytes() == b"already here"


def test_existing_file_with_wrong_hash_is_replaced(served: tuple[str, bytes, str], tmp_path: Path) -> None:
    base, data, sha = served
    dest = tmp_path / "a.zip"
    dest.write_bytes(b"stale")
    download_file(f"{base}/images_background.zip", dest, sha, timeout=10)
    assert dest.read_bytes() == data


def test_local_path_and_file_url_sources(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"local bytes")
    sha = hashlib.sha256(b"local bytes").hexdigest()
    assert download_file(str(source), tmp_path / "a.bin", sha).read_bytes() == b"local bytes"
    assert download_file(source.as_uri(), tmp_path / "b.bin", sha).read_bytes() == b"local bytes"
    with pytest.raises(DatasetError, match="missing.bin"):
        download_file(str(tmp_path / "missing.bin"), tmp_path / "c.bin", sha)
    assert not (tmp_path / "c.bin").exists()


def test_download_omniglot_then_load(served: tuple[str, bytes, str], tmp_path: Path) -> None:
    base, _, sha = served
    path = download_omniglot(tmp_path / "data", url=f"{base}/images_background.zip", sha256=sha)
    assert path == tmp_path / "data" / "images_background.zip"
    ds = load_omniglot(path, cache_dir=tmp_path / "cache")
    assert ds.class_names == ("Latin/character01",) and ds.class_sizes == (2,)
    with pytest.raises(ValueError, match="which"):
        download_omniglot(tmp_path, which="test")
    # a mirror without an explicit hash is checked against the canonical official hash
    with pytest.raises(DatasetError, match="ad41ab679c8b"):
        download_omniglot(tmp_path / "other", url=f"{base}/images_background.zip")
