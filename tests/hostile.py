"""Builders of hostile files for the contract tests: zips written field by field (so that sizes, checksums, flags
and methods can lie), .npy bytes with any header, and label and path values of every kind."""

from __future__ import annotations

import bz2
import datetime
import decimal
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
LOCAL = struct.Struct("<4s5H3L2H")
CENTRAL = struct.Struct("<4s6H3L5H2L")
END = struct.Struct("<4s4H2LH")


@dataclass
class Entry:
    """One zip member as written: its real content and what its headers declare (None: the truth)."""

    name: str
    content: bytes
    method: int = STORED
    inflate: int = 0  # zero bytes appended to the content before compressing, not declared
    flags: int = 0
    declared_size: int | None = None
    declared_crc: int | None = None
    extra: bytes = field(default=b"")


@lru_cache(maxsize=64)
def compress(data: bytes, method: int) -> bytes:
    """``data`` compressed as a zip member of ``method``."""
    if method == STORED:
        return data
    if method == DEFLATED:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush()
    if method == BZIP2:
        return bz2.compress(data)
    filters = [{"id": lzma.FILTER_LZMA1}]
    properties = lzma._encode_filter_properties(filters[0])
    return struct.pack("<BBH", 9, 4, len(properties)) + properties + lzma.compress(
        data, format=lzma.FORMAT_RAW, filters=filters)


def zip_bytes(entries: list[Entry], comment: bytes = b"", trailing: bytes = b"", extra_entries: int = 0) -> bytes:
    """A zip of ``entries`` whose headers say what each entry declares; ``extra_entries`` more directory records
    (pointing at the first member) are appended to the directory."""
    body, directory = bytearray(), bytearray()
    for entry in entries:
        payload = compress(entry.content + b"\0" * entry.inflate, entry.method)
        size = len(entry.content) if entry.declared_size is None else entry.declared_size
        crc = zlib.crc32(entry.content) if entry.declared_crc is None else entry.declared_crc
        name = entry.name.encode()
        offset = len(body)
        body += LOCAL.pack(b"PK\x03\x04", 20, entry.flags, entry.method, 0, 0, crc, len(payload) if entry.method
                           else size, size, len(name), len(entry.extra)) + name + entry.extra + payload
        directory += _central(entry, name, crc, len(payload) if entry.method else size, size, offset)
    for _ in range(extra_entries):
        directory += _central(entries[0], entries[0].name.encode(), 0, 0, 0, 0)
    count = min(len(entries) + extra_entries, 0xFFFF)
    end = END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), len(comment))
    return bytes(body + directory + end + comment + trailing)


def _central(entry: Entry, name: bytes, crc: int, stored: int, size: int, offset: int) -> bytes:
    return CENTRAL.pack(b"PK\x01\x02", 20, 20, entry.flags, entry.method, 0, 0, crc, stored, size, len(name),
                        len(entry.extra), 0, 0, 0, 0, offset) + name + entry.extra


def npy_bytes(descr: str, fortran: bool, shape: tuple, data: bytes, version: int = 1, header_pad: int = 0) -> bytes:
    """.npy bytes with exactly this header (any shape, even one no array could have) followed by ``data``."""
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode()
    header += b" " * header_pad + b"\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


# Label values: what adapt must accept as the value it stands for, and what it must refuse.
ODD_LABELS = (None, b"bytes", (1, 2), frozenset({1}), 1 + 2j, complex("nan"), decimal.Decimal("NaN"),
              decimal.Decimal("sNaN"), decimal.Decimal("1.5"), datetime.date(2026, 1, 1), datetime.datetime(2026, 1, 1),
              np.datetime64("NaT"), np.datetime64("2026-01-01"), np.timedelta64("NaT"), np.complex64(1j), np.bytes_(b"x"),
              float("nan"), float("inf"), -float("inf"), np.float32("nan"), np.float64("inf"), 2 ** 64, -(2 ** 70),
              "\ud800", "a\udfffb", "x" * 257, object())
PLAIN_LABELS = (0, 1, -1, True, False, 1.0, 2.5, -0.0, 1e300, "a", "b", "", "é", "\U0001F600", "x" * 256,
                np.int64(3), np.int8(-2), np.uint64(5), np.float32(0.5), np.float64(7.0), np.str_("np"), np.bool_(True),
                (1 << 63) - 1, -(1 << 63))
