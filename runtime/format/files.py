"""Content hashes, bounded reads of regular files inside a folder, and atomic writes of files and folders.

Temporary files and folders are named ``.edgeadapt-<pid>-<random>.tmp`` beside their target (short, so any
target name that fits NAME_MAX fits); each write first removes those whose process is gone (killed mid-write).
Created files and folders get the usual permissions (0666 / 0777 less the umask), not mkstemp's 0600 / 0700.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import ArtifactError, InputError, StorageError

TEMP_PATTERN = re.compile(r"\.edgeadapt-(\d+)-[0-9a-f]+\.tmp")
_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "the file system is read-only", errno.EISDIR: "a folder is in the way",
            errno.ENOTDIR: "a file is in the way of a folder on the path", errno.EEXIST: "something is in the way",
            errno.ENAMETOOLONG: "the name is too long"}


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_regular_file(folder: Path, name: str, limit: int) -> bytes:
    """The bytes of the regular file ``name`` directly inside ``folder``, read once, at most ``limit`` bytes.

    Raises ArtifactError for a path outside the folder (``..``, a subfolder, a symlink leading out), a FIFO,
    device, socket or folder, a file over ``limit`` and an unreadable file; a FIFO never blocks the read.
    """
    with open_regular_file(folder, name, limit) as (f, _):
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ArtifactError(f"{folder / name} cannot be read: {e}") from e
    if len(data) > limit:
        raise ArtifactError(f"{folder / name} grew past the limit of {limit} bytes while being read")
    return data


@contextmanager
def open_regular_file(folder: Path, name: str, limit: int) -> Iterator[tuple[BinaryIO, int]]:
    """The open regular file ``name`` directly inside ``folder`` and its size, at most ``limit`` bytes, with the
    checks of :func:`read_regular_file`; for readers that take only what they need of it."""
    path = folder / name
    if not name or Path(name).name != name or name in (".", "..") or "\0" in name:
        raise ArtifactError(f"{folder}: {name!r} is not a plain file name")
    try:
        resolved = path.resolve(strict=True)
        inside = resolved.parent == folder.resolve(strict=True)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (OSError, RuntimeError, ValueError) as e:  # symlink loops, permissions, a NUL in the folder's name
        raise ArtifactError(f"{path} cannot be resolved: {e}") from e
    if not inside:
        raise ArtifactError(f"{path} links outside the folder {folder} (to {resolved}); refused")
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise ArtifactError(f"{path} cannot be opened: {e}") from e
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{path} is not a regular file; refused")
        raise ArtifactError(f"{path} holds {info.st_size} bytes, more than the limit of {limit}")
    with os.fdopen(fd, "rb") as f:
        yield f, info.st_size


def remove_orphans(directory: Path) -> None:
    """Delete temporary files and folders beside ``directory``'s entries whose writing process has died."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        match = TEMP_PATTERN.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a StorageError that says what to change (chained)."""
    if "\0" in os.fspath(path):
        raise InputError(f"{os.fspath(path)!r} holds a NUL character: not a usable file name")
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        reason = _REASONS.get(e.errno, "the operating system refused")
        raise StorageError(f"cannot write {os.fspath(path)}: {reason} ({e.strerror or e})") from e


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path``; on success it is fsynced and renamed onto ``path``.

    A crash or exception leaves any previous file at ``path`` untouched and removes the temporary file; an
    operating-system error (full disk, permissions, a folder in the way, a name too long) is a StorageError.
    """
    target = Path(path)
    with storage_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target.parent)
        tmp = _temp_name(target.parent)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        finally:
            _remove_quietly(tmp)


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty staging folder beside ``path``; on success its files are fsynced and it replaces ``path``.

    The previous folder is kept until the swap is done: if the process dies between the two renames it
    survives as ``.<name>.<pid>.old``. On an exception the staging folder is removed and ``path`` is untouched;
    operating-system errors are StorageErrors, as for :func:`atomic_path`.
    """
    target = Path(path)
    with storage_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target.parent)
        staging = _temp_name(target.parent)
        staging.mkdir(0o777)
        try:
            yield staging
            replace_folder(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def replace_folder(staging: Path, target: Path) -> None:
    """Fsync every file in ``staging`` and rename it onto ``target``, keeping the old folder until the swap is done."""
    for f in staging.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    backup = None
    if target.exists():
        backup = target.parent / f".{target.name}.{os.getpid()}.old"
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _temp_name(directory: Path) -> Path:
    return directory / f".edgeadapt-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
