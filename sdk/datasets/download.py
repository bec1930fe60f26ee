"""Fetch dataset files by URL or local path, verified by sha256, never leaving a partial file behind."""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from edgeadapt.runtime.format.files import atomic_path, sha256_file
from ..errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

OMNIGLOT_DOWNLOADS = {
    "background": (
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
        "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    ),
    "evaluation": (
        "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
        "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
    ),
}


def download_file(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60) -> Path:
    """Fetch ``url`` (http(s), file:// or a local path) to ``dest`` atomically and check its sha256.

    An existing ``dest`` with the right hash is returned as is; a hash mismatch raises DatasetError and writes nothing.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if dest.is_file() and sha256_file(dest) == expected:
        logger.info("%s already present with the expected sha256", dest)
        return dest
    logger.info("fetching %s to %s", url, dest)
    with atomic_path(dest) as tmp:
        with _open_source(url, timeout) as source, open(tmp, "wb") as out:
            try:
                shutil.copyfileobj(source, out, 1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                raise DatasetError(f"fetching {url} failed: {exc}") from exc
        actual = sha256_file(tmp)
        if actual != expected:
            raise DatasetError(f"{url}: sha256 mismatch, expected {expected} but got {actual}; {dest} not written")
    return dest


def download_omniglot(
    dest_dir: str | os.PathLike,
    which: str = "background",
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 60,
) -> Path:
    """Fetch the official Omniglot ``images_<which>.zip`` into ``dest_dir`` (``url`` and ``sha256`` override the canonical ones)."""
    if which not in OMNIGLOT_DOWNLOADS:
        raise ConfigError(f"which must be one of {sorted(OMNIGLOT_DOWNLOADS)}, got {which!r}")
    canonical_url, canonical_sha256 = OMNIGLOT_DOWNLOADS[which]
    dest = Path(dest_dir) / f"images_{which}.zip"
    return download_file(url or canonical_url, dest, sha256 or canonical_sha256, timeout)


def _open_source(url: str, timeout: float) -> BinaryIO:
    """A readable stream for ``url``: a local file for paths and file:// URLs, else an HTTP(S) response."""
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme == "file":
            return open(urllib.request.url2pathname(parsed.path), "rb")
        if len(parsed.scheme) <= 1:  # a plain path (one letter: a Windows drive)
            return open(url, "rb")
        request = urllib.request.Request(url, headers={"User-Agent": "edgeadapt"})
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DatasetError(f"fetching {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DatasetError(f"fetching {url} failed: {exc.reason}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DatasetError(f"fetching {url} failed: {exc}") from exc
