"""A user's folder as a dataset: one sub-folder per class (``root/<class>/<file>``), or a group level above the
classes (``root/<group>/<class>/<file>``, what group splits and within-group tasks use).

Pictures (JPEG, PNG, BMP; RGB, grayscale or palette, any size, mixed) are decoded once with Pillow, brought to
the input description's channels, fit and size exactly as :func:`edgeadapt.runtime.preprocess.prepare` brings an
app's frames, and kept as uint8; WAV clips (one sample rate for the whole folder: the model's) become log-mel
features by the runtime's own :func:`edgeadapt.runtime.audio.clip_features`. Both are cached on disk, keyed by
every file's name, size and modification time and by the input description, so a second load skips decoding.
Every problem with the folder is one DatasetError line naming the file or class.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from edgeadapt.runtime.audio import clip_features
from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.runtime.preprocess import centre_box

from ..errors import DatasetError
from .base import ClassDataset
from .cache import read_arrays, resolve_cache_dir, write_arrays

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
AUDIO_SUFFIXES = (".wav",)
MIN_EXAMPLES = 2  # a class needs a support and a query example
CACHE_VERSION = 1  # bump when decoding changes, so old cache files are not reused


@dataclass(frozen=True)
class FolderClass:
    """One class of a folder: its group (``""`` without a group level), its name and its files, sorted."""

    group: str
    name: str
    files: tuple[Path, ...]


def scan_folder(root: Path, suffixes: tuple[str, ...]) -> list[FolderClass]:
    """The classes of ``root`` holding files with ``suffixes`` (case-insensitive; other files are ignored)."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder (expected one sub-folder of examples per class)")
    top = _subfolders(root)
    grouped = bool(top) and all(_subfolders(folder) and not _files(folder, suffixes) for folder in top)
    pairs = [(g.name, c) for g in top for c in _subfolders(g)] if grouped else [("", c) for c in top]
    classes = [FolderClass(group, folder.name, _files(folder, suffixes)) for group, folder in pairs]
    kind = "/".join(s.lstrip(".") for s in suffixes)
    for c in classes:
        if len(c.files) < MIN_EXAMPLES:
            what = "no" if not c.files else "only one"
            raise DatasetError(f"class {c.name!r} ({root / c.group / c.name}) has {what} {kind} file"
                               f"{'s' if not c.files else ''}; every class needs at least {MIN_EXAMPLES} examples")
    if len(classes) < 2:
        raise DatasetError(f"{root} holds {len(classes)} class folder{'s' * (len(classes) != 1)} of {kind} files; "
                           "few-shot tasks need at least 2 classes (one sub-folder per class)")
    return classes


def is_audio_folder(root: Path) -> bool:
    """Whether ``root``'s class folders hold WAV clips rather than pictures."""
    return any(p.suffix.lower() in AUDIO_SUFFIXES for p in root.rglob("*") if p.is_file())


def load_image_folder(root: Path, spec: InputSpec, cache_dir: Path | None = None) -> ClassDataset:
    """The pictures under ``root`` as uint8 examples of ``spec``'s shape (channels, height, width)."""
    if spec.modality not in ("image", "strokes") or spec.layout != "CHW" or spec.shape[0] not in (1, 3):
        raise DatasetError(f"pictures are read as 1 or 3 channel CHW images, not {spec.modality} of {spec.shape}")
    return _load(root, IMAGE_SUFFIXES, spec, cache_dir, lambda path: read_picture(path, spec))


def load_audio_folder(root: Path, spec: InputSpec, cache_dir: Path | None = None) -> ClassDataset:
    """The WAV clips under ``root`` as float32 log-mel features of ``spec.audio``; DatasetError when the folder's
    sample rates differ from each other or from ``spec.audio.sample_rate``."""
    if spec.audio is None:
        raise DatasetError("an audio folder needs an input description with audio settings (InputSpec.audio)")
    return _load(root, AUDIO_SUFFIXES, spec, cache_dir, lambda path: _clip_features(path, spec))


def folder_sample_rate(root: Path) -> int:
    """The one sample rate of every WAV clip under ``root``; DatasetError naming two files that differ."""
    import soundfile

    rates: dict[int, Path] = {}
    for c in scan_folder(root, AUDIO_SUFFIXES):
        for path in c.files:
            try:
                rates.setdefault(soundfile.info(str(path)).samplerate, path)
            except (RuntimeError, OSError) as e:
                raise DatasetError(f"{path} is not a readable WAV file: {e}") from None
    if len(rates) > 1:
        (a, first), (b, second) = list(rates.items())[:2]
        raise DatasetError(f"mixed sample rates: {first} is {a} Hz, {second} is {b} Hz; resample the folder to one "
                           "rate (the model's)")
    return next(iter(rates))


def read_picture(path: Path, spec: InputSpec) -> np.ndarray:
    """One picture file as uint8 ``spec.shape`` (channels, height, width): Pillow-decoded, EXIF-rotated, converted
    to RGB or L, centre-cropped when ``spec.fit`` is ``crop``, resized with Lanczos."""
    from PIL import Image, ImageOps

    channels, height, width = spec.shape
    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path} is not a readable image: {e}") from None
    if spec.crops:
        top, left, box_height, box_width = centre_box(picture.height, picture.width, height, width)
        picture = picture.crop((left, top, left + box_width, top + box_height))
    pixels = np.asarray(picture.resize((width, height), Image.LANCZOS))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _clip_features(path: Path, spec: InputSpec) -> np.ndarray:
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:
        raise DatasetError(f"{path} is not a readable WAV file: {e}") from None
    if len(samples) == 0:
        raise DatasetError(f"{path} holds no samples")
    if rate != spec.audio.sample_rate:
        raise DatasetError(f"{path} is {rate} Hz, the model's clips {spec.audio.sample_rate} Hz: mixed sample rates")
    return clip_features(samples.mean(axis=1), rate, spec.audio)


def _load(root: Path, suffixes: tuple[str, ...], spec: InputSpec, cache_dir: Path | None,
          read: Callable[[Path], np.ndarray]) -> ClassDataset:
    """Scan, then decode every file with ``read`` (or take the cached arrays), into a ClassDataset."""
    classes = scan_folder(root, suffixes)
    files = [path for c in classes for path in c.files]
    cache_file = resolve_cache_dir(cache_dir) / "folders" / f"{_fingerprint(root, files, spec)}.npz"
    arrays = read_arrays(cache_file)
    if arrays is None:
        log.info("decoding %d files from %s (cached afterwards in %s)", len(files), root, cache_file)
        examples = np.stack([read(path) for path in tqdm(files, desc=f"reading {root.name}", unit="file",
                                                         disable=None)])
        arrays = {"examples": examples, "class_sizes": np.array([len(c.files) for c in classes])}
        write_arrays(cache_file, arrays)
    return ClassDataset(torch.from_numpy(arrays["examples"]), tuple(arrays["class_sizes"].tolist()),
                        tuple(c.name for c in classes), tuple(c.group for c in classes), spec)


def _fingerprint(root: Path, files: list[Path], spec: InputSpec) -> str:
    """A hash of the decoding inputs: each file's path under ``root``, size and modification time, and ``spec``."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, spec.to_json()]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path, suffixes: tuple[str, ...]) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                        and not p.name.startswith(".")))
