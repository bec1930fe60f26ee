"""Bounded reading of the zips and ``.npy`` arrays the runtime is given (saved states, an artifact's self-check task).

Nothing is inflated, decrypted or allocated from a size a file declares before that size is checked:

- a zip's directory is checked before it is parsed: its end record must end the file (no trailing bytes, no
  comment, no ZIP64), and it may list no more entries than the caller has names for, so a small file can neither
  declare many members nor hide a second archive;
- each member must be named by the caller, stored (never compressed) and unencrypted, and is read with at most
  its limit + 1 bytes, its length then compared with the size it declares;
- an array's header is parsed and its dtype and shape compared with the expected ones before its data are
  touched, and the data are a view of the bytes read, never an allocation sized by the header.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from typing import BinaryIO, Callable, Mapping, Sequence

import numpy as np

from .errors import ArtifactError

Shape = Sequence["int | None"]  # an expected array shape; None matches any length on that axis
NamesCheck = Callable[[list[str]], None]  # raises ArtifactError for a list of member names it refuses

END_RECORD = struct.Struct("<4s4H2LH")  # the zip's end-of-central-directory record (no comment)
END_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_SIGNATURE = b"PK\x06\x07"
ENTRY_BYTES = 1024  # an upper bound on one central-directory entry for the member names edgeadapt writes
MAX_NPY_HEADER = 4096
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
               RuntimeError, struct.error)


def read_stored_zip(source: BinaryIO, size: int, limits: Mapping[str, int], where: str,
                    check_names: NamesCheck | None = None) -> dict[str, bytes]:
    """The members of the zip in ``source`` (``size`` bytes), each named in ``limits`` and at most its limit long.

    ``check_names`` sees the member names before anything is read. Raises ArtifactError naming what is wrong."""
    try:
        _check_directory(source, size, len(limits), where)
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if check_names is not None:
                check_names(names)
            unknown = sorted(set(names) - set(limits))
            if unknown or len(set(names)) != len(names):
                raise ArtifactError(f"{where} holds {sorted(names)}; expected distinct members among "
                                    f"{sorted(limits)}")
            return {info.filename: _member(archive, info, limits[info.filename], where) for info in infos}
    except _ZIP_ERRORS as e:
        raise ArtifactError(f"{where} is not a readable archive: {e}") from e


def read_npy(raw: bytes, shape: Shape, dtype: np.dtype, where: str) -> np.ndarray:
    """The array in the ``.npy`` bytes ``raw``, if its header declares exactly ``dtype`` and ``shape``.

    The result is a read-only view of ``raw`` in this machine's byte order (no copy where they agree)."""
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(stream, MAX_NPY_HEADER)
        elif version == (2, 0):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(stream, MAX_NPY_HEADER)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]}; 1.0 and 2.0 are read")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, RecursionError) as e:
        raise ArtifactError(f"{where} is not a readable array: {e}") from e
    if found_dtype != dtype or found_dtype.str != dtype.str:
        raise ArtifactError(f"{where} has dtype {found_dtype.str}; expected {dtype.str} (little-endian)")
    if fortran and len(found_shape) > 1:
        raise ArtifactError(f"{where} is stored in Fortran order; expected C order")
    if len(found_shape) != len(shape) or any(want is not None and got != want for got, want in zip(found_shape, shape)):
        expected = tuple("any" if want is None else want for want in shape)
        raise ArtifactError(f"{where} has shape {found_shape}; this artifact expects {expected}")
    body = memoryview(raw)[stream.tell():]
    if len(body) != math.prod(found_shape) * dtype.itemsize:
        raise ArtifactError(f"{where} holds {len(body)} bytes of data; its header declares shape {found_shape}")
    return np.frombuffer(body, dtype).reshape(found_shape).astype(dtype.newbyteorder("="), copy=False)


def _check_directory(source: BinaryIO, size: int, most_entries: int, where: str) -> None:
    """Refuse a zip whose directory is not at its very end, lists too many entries, or uses ZIP64."""
    if size < END_RECORD.size:
        raise ArtifactError(f"{where} is not a readable archive: {size} bytes is too short for a zip")
    source.seek(size - END_RECORD.size)
    signature, _, _, _, entries, directory_bytes, _, comment = END_RECORD.unpack(source.read(END_RECORD.size))
    if signature != END_SIGNATURE or comment:
        raise ArtifactError(f"{where} is not a readable archive: it does not end with a zip directory (trailing "
                            "bytes, a comment, or no zip)")
    if entries > most_entries or directory_bytes > ENTRY_BYTES * most_entries:
        raise ArtifactError(f"{where} lists {entries} members in {directory_bytes} bytes; at most {most_entries} "
                            "are expected")
    locator = size - END_RECORD.size - ZIP64_LOCATOR.size
    if locator >= 0:
        source.seek(locator)
        if source.read(4) == ZIP64_SIGNATURE:
            raise ArtifactError(f"{where} is a ZIP64 archive; refused")
    source.seek(0)


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str) -> bytes:
    """One member's bytes: stored, unencrypted, declared and read within ``limit``."""
    name = f"{where}: {info.filename}"
    if info.flag_bits & 0x1:
        raise ArtifactError(f"{name} is encrypted; refused unread")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ArtifactError(f"{name} is compressed (zip method {info.compress_type}); members are stored "
                            "uncompressed, so it is refused unread")
    if info.file_size > limit or info.compress_size != info.file_size:
        raise ArtifactError(f"{name} declares {info.file_size} bytes ({info.compress_size} stored); this artifact "
                            f"allows at most {limit}")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) != info.file_size:
        raise ArtifactError(f"{name} holds {len(data)} bytes but declares {info.file_size}")
    return data
