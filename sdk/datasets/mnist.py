"""MNIST from its four gzip-compressed IDX files (``$EDGEADAPT_DATA/mnist``), with clear errors for bad files."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeadapt.runtime.format.files import atomic_path
from ..errors import DatasetError
from .paths import find_data_dir

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
UBYTE = 0x08  # the IDX type code MNIST uses for both images and labels


@dataclass(frozen=True)
class MNISTSplit:
    """One MNIST split: ``images`` uint8 ``(n, rows, cols)`` (ink high) and ``labels`` uint8 ``(n,)`` in 0..9."""

    images: np.ndarray
    labels: np.ndarray


def mnist_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the IDX files: ``data_dir`` itself if it has them, else ``data_dir/mnist``.

    ``data_dir`` defaults to ``find_data_dir()`` (``$EDGEADAPT_DATA`` or ``../shared/data``).
    """
    root = find_data_dir(data_dir)
    return root if (root / MNIST_FILES["train"][0]).exists() else root / "mnist"


def load_mnist(data_dir: str | os.PathLike | None = None, split: str = "train") -> MNISTSplit:
    """Images and labels of the MNIST ``split`` ("train": 60,000, "test": 10,000), verified for consistency."""
    if split not in MNIST_FILES:
        raise DatasetError(f"MNIST split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    folder = mnist_path(data_dir)
    image_file, label_file = (folder / name for name in MNIST_FILES[split])
    images = read_idx(image_file, ndim=3)
    labels = read_idx(label_file, ndim=1)
    if len(images) != len(labels):
        raise DatasetError(f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_file}: labels must be digits 0..9, found {int(labels.max())}")
    return MNISTSplit(images, labels)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The unsigned-byte array of ``ndim`` dimensions stored in the gzip-compressed IDX file ``path``."""
    if not path.is_file():
        raise DatasetError(f"MNIST file {path} is missing (expected the four IDX .gz files in {path.parent})")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        raise DatasetError(f"{path} is not a complete gzip file (corrupt or truncated): {e}") from e
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, dtype, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != UBYTE or dims != ndim:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file of {ndim} dimension(s) "
                           f"(magic {raw[:4].hex()}, expected 000008{ndim:02x})")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(shape, dtype=np.int64))
    if len(body) != expected:
        raise DatasetError(f"{path}: header says shape {shape} ({expected} bytes) but the file holds {len(body)} "
                           "bytes of data (truncated or corrupt)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file, atomically (for tests and small synthetic datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_path(path) as tmp, gzip.open(tmp, "wb") as f:
        f.write(header + array.tobytes())
