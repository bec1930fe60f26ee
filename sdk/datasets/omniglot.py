"""Omniglot: read the official zips or extracted folders into a ClassDataset, cached, with a fixed split."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from edgeadapt.runtime.format.files import sha256_file
from edgeadapt.runtime.format.inputs import InputSpec

from ..errors import ConfigError, ConfigTypeError, DatasetError
from .base import STROKES, ClassDataset
from .cache import read_arrays, resolve_cache_dir, write_arrays

logger = logging.getLogger(__name__)

SET_FOLDERS = ("images_background", "images_evaluation")
OMNIGLOT_VALIDATION_ALPHABETS = ("Bengali", "Futurama", "Hebrew", "Korean", "Tagalog", "Tifinagh")
IMAGE_SIZE = 28
_CACHE_VERSION = 1  # bump when preprocessing or the cache format changes
_CHARACTER = re.compile(r"character(\d+)")
_LAYOUT = "images_background/<Alphabet>/characterNN/*.png (or images_evaluation/...)"

# (alphabet, character folder, sorted PNG member names relative to the set folder)
_Character = tuple[str, str, list[str]]


def preprocess_omniglot(raw: np.ndarray) -> np.ndarray:
    """Turn raw Omniglot PNG arrays (..., H, W) (bool or uint8, ink dark) into float32 (..., 28, 28), ink = 1.0.

    Each image is made 8-bit grayscale, resized to 28x28 with PIL ``Image.LANCZOS``, then ink = 1 - value/255, clipped to [0, 1].
    """
    raw = np.asarray(raw)
    if raw.ndim < 2:
        raise ConfigError(f"expected images of shape (..., H, W), got {raw.shape}")
    if raw.dtype == np.bool_:
        gray = raw.astype(np.uint8) * np.uint8(255)
    elif raw.dtype == np.uint8:
        gray = raw
    else:
        raise ConfigTypeError(f"expected bool or uint8 images, got {raw.dtype}")
    flat = gray.reshape(-1, *gray.shape[-2:])
    out = np.empty((flat.shape[0], IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for i, image in enumerate(flat):
        small = Image.fromarray(np.ascontiguousarray(image)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
        out[i] = 1.0 - np.asarray(small, dtype=np.float32) / 255.0
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(*gray.shape[:-2], IMAGE_SIZE, IMAGE_SIZE)


def load_omniglot(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> ClassDataset:
    """Load an Omniglot set from its official zip or extracted folder as (n_classes, 20, 1, 28, 28) float32, ink = 1.0.

    Decoded arrays are cached under ``cache_dir`` (else ``$EDGEADAPT_CACHE``, else ``~/.cache/edgeadapt``), never beside the data.
    """
    path = Path(path).expanduser()
    decode: Callable[[], dict[str, np.ndarray]]
    if path.is_dir():
        root = _set_folder(path)
        members = _folder_members(root)
        key = _folder_key(root, members)
        decode = lambda: _decode(path, members, lambda m: (root / m).read_bytes())  # noqa: E731
    elif path.is_file():
        key = sha256_file(path)
        decode = lambda: _decode_zip(path)  # noqa: E731
    else:
        raise DatasetError(f"{path} does not exist; expected an Omniglot zip or a folder holding {_LAYOUT}")
    cache_file = resolve_cache_dir(cache_dir) / f"omniglot-v{_CACHE_VERSION}-{key}.npz"
    cached = read_arrays(cache_file)
    if cached is not None:
        try:
            return _from_arrays(cached)
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("ignoring inconsistent cache file %s (%s); decoding again", cache_file, exc)
    logger.info("decoding Omniglot images from %s (cached afterwards in %s)", path, cache_file)
    arrays = decode()
    write_arrays(cache_file, arrays)
    return _from_arrays(arrays)


def omniglot_splits(dataset: ClassDataset, rotate_train: bool = True) -> tuple[ClassDataset, ClassDataset]:
    """Split the background set by alphabet into (train, validation); train classes gain 90/180/270-degree rotations.

    Validation is OMNIGLOT_VALIDATION_ALPHABETS (206 of 964 classes), unrotated; train is the other 24 alphabets.
    """
    present = set(dataset.groups)
    missing = [a for a in OMNIGLOT_VALIDATION_ALPHABETS if a not in present]
    if missing:
        raise DatasetError(
            f"validation alphabets {missing} are missing; omniglot_splits expects the Omniglot background set"
        )
    train = dataset.select_groups(sorted(present - set(OMNIGLOT_VALIDATION_ALPHABETS)))
    validation = dataset.select_groups(OMNIGLOT_VALIDATION_ALPHABETS)
    return (train.with_rotations() if rotate_train else train), validation


def omniglot_path(data_dir: str | os.PathLike, which: str = "background") -> Path:
    """``data_dir/omniglot/images_<which>.zip``, or the extracted ``images_<which>/`` folder when the zip is missing."""
    folder = Path(data_dir) / "omniglot"
    zip_path = folder / f"images_{which}.zip"
    if zip_path.is_file():
        return zip_path
    if (folder / f"images_{which}").is_dir():
        return folder / f"images_{which}"
    raise DatasetError(f"no Omniglot {which} set in {folder}: expected images_{which}.zip or an images_{which}/ folder")


def _decode_zip(path: Path) -> dict[str, np.ndarray]:
    """Decode every character of an Omniglot zip (see ``_decode``)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable zip file ({exc}); expected an Omniglot zip holding {_LAYOUT}") from exc
    with archive:
        prefix, members = _zip_members(path, archive.namelist())

        def read(member: str) -> bytes:
            try:
                return archive.read(prefix + member)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise DatasetError(f"{path}: corrupt zip entry {prefix + member} ({exc})") from exc

        return _decode(path, members, read)


def _decode(path: Path, members: list[str], read: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """The arrays of a ClassDataset decoded from the set folder's ``members`` (paths relative to it)."""
    characters = _group_characters(path, members)
    images = np.stack([preprocess_omniglot(_read_drawings(path, pngs, read)) for _, _, pngs in characters])
    return {
        "images": images[:, :, None],
        "class_names": np.array([f"{alphabet}/{character}" for alphabet, character, _ in characters]),
        "alphabets": np.array([alphabet for alphabet, _, _ in characters]),
    }


def _from_arrays(arrays: dict[str, np.ndarray]) -> ClassDataset:
    images = torch.from_numpy(arrays["images"])
    return ClassDataset.dense(
        images,
        tuple(str(name) for name in arrays["class_names"]),
        tuple(str(name) for name in arrays["alphabets"]),
        InputSpec(tuple(images.shape[2:]), **STROKES),
    )


def _read_drawings(path: Path, pngs: list[str], read: Callable[[str], bytes]) -> np.ndarray:
    """The character's PNGs as one uint8 grayscale array (n_drawings, H, W)."""
    drawings = []
    for member in pngs:
        data = read(member)
        try:
            with Image.open(io.BytesIO(data)) as image:
                drawings.append(np.asarray(image.convert("L")))
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read PNG {member} ({exc})") from exc
    if len({d.shape for d in drawings}) > 1:
        raise DatasetError(f"{path}: drawings under {Path(pngs[0]).parent} differ in size; expected equal-size PNGs")
    return np.stack(drawings)


def _group_characters(path: Path, members: list[str]) -> list[_Character]:
    """Character folders in order (alphabet name, character number) with their PNGs sorted by filename."""
    folders: dict[tuple[str, str], list[str]] = {}
    for member in members:
        parts = member.rstrip("/").split("/")
        if len(parts) == 2 and member.endswith("/"):
            folders.setdefault((parts[0], parts[1]), [])
        elif len(parts) >= 3:
            pngs = folders.setdefault((parts[0], parts[1]), [])
            if len(parts) == 3 and parts[2].lower().endswith(".png"):
                pngs.append(member)
    if not folders:
        raise DatasetError(f"{path}: no alphabet/character folders; expected {_LAYOUT}")
    for alphabet, character in folders:
        if not _CHARACTER.fullmatch(character):
            raise DatasetError(f"{path}: unexpected folder {alphabet}/{character}; expected characterNN folders")
    order = sorted(folders, key=lambda k: (k[0], int(_CHARACTER.fullmatch(k[1]).group(1)), k[1]))  # type: ignore[union-attr]
    characters = [(alphabet, character, sorted(folders[alphabet, character])) for alphabet, character in order]
    expected_alphabet, expected_character, expected = characters[0]
    for alphabet, character, pngs in characters:
        if not pngs:
            raise DatasetError(f"{path}: character folder {alphabet}/{character} holds no PNG files")
        if len(pngs) != len(expected):
            raise DatasetError(
                f"{path}: {alphabet}/{character} has {len(pngs)} drawings but {expected_alphabet}/"
                f"{expected_character} has {len(expected)}; every character needs the same number"
            )
    return characters


def _zip_members(path: Path, names: list[str]) -> tuple[str, list[str]]:
    """The set folder's prefix inside the zip and its entries relative to it (hidden and __MACOSX entries skipped)."""
    roots: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        for i, part in enumerate(parts[:-1]):
            if part in SET_FOLDERS:
                prefix = "/".join(parts[: i + 1]) + "/"
                roots.setdefault(prefix, []).append(name[len(prefix) :])
                break
    if not roots:
        raise DatasetError(f"{path}: no images_background/ or images_evaluation/ folder in the zip; expected {_LAYOUT}")
    if len(roots) > 1:
        raise DatasetError(f"{path}: several Omniglot set folders {sorted(roots)}; expected exactly one")
    prefix, members = next(iter(roots.items()))
    return prefix, [m for m in members if m]


def _set_folder(path: Path) -> Path:
    """``path`` itself when it is a set folder, else the one set folder directly inside it."""
    if path.name in SET_FOLDERS:
        return path
    found = [path / name for name in SET_FOLDERS if (path / name).is_dir()]
    if len(found) != 1:
        what = "both images_background/ and images_evaluation/; pass one of them" if found else f"no {_LAYOUT}"
        raise DatasetError(f"{path}: holds {what}")
    return found[0]


def _folder_members(root: Path) -> list[str]:
    """Relative paths of the set folder's entries, folders ending in "/" (hidden entries skipped)."""
    members = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        relative = Path(dirpath).relative_to(root).as_posix()
        base = "" if relative == "." else relative + "/"
        members += [base + d + "/" for d in dirnames]
        members += [base + f for f in filenames if not f.startswith(".")]
    return sorted(members)


def _folder_key(root: Path, members: list[str]) -> str:
    """A cache key for a folder: hash of its set name and every file's relative path, size and mtime."""
    digest = hashlib.sha256(root.name.encode())
    for member in members:
        if not member.endswith("/"):
            stat = (root / member).stat()
            digest.update(f"\n{member}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return "dir-" + digest.hexdigest()
