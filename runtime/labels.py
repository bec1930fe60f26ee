"""What a label may be: one rule, applied alike by ``adapt``, ``update``, ``save`` and ``restore``.

A label is a string of at most MAX_LABEL_CHARS characters that is valid Unicode (no lone surrogates), an integer
in the signed 64-bit range (``bool`` included), or a finite float. numpy scalars count as the Python value they
hold (``np.int64(3)`` is ``3``, ``np.str_("a")`` is ``"a"``) and subclasses of ``str``, ``int`` and ``float`` as
their base type, so a learner's classes are plain Python values that JSON stores exactly: every learner that
``adapt`` returns can be saved and restored as it is. Labels that compare equal (``1``, ``1.0``, ``True``) are one
class, named by the first of them seen. Everything else is refused: a NaN or infinite float with InputError (NaN
is not equal to itself, so it cannot name a class), other types (None, bytes, tuples, complex, Decimal, dates,
numpy datetime64 and NaT) with InputTypeError.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from .errors import InputError, InputTypeError

Label = Union[str, int, float]  # a class label as learners hold it (bool is an int)
MAX_LABEL_CHARS = 256
INT64 = (-(1 << 63), (1 << 63) - 1)


def as_label(value: Any, where: str = "a label") -> Label:
    """``value`` as the plain Python label it stands for; InputError / InputTypeError if it cannot be one."""
    if isinstance(value, np.generic) and isinstance(value, (np.bool_, np.integer, np.floating, np.str_)):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(str(value), where)
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise InputError(f"{where} is an integer outside the signed 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where} is {value}: labels must be finite (NaN is not equal to itself)")
        return float(value)
    raise InputTypeError(f"{where} is of type {type(value).__name__}; labels are strings, integers or finite "
                         "floats")


def as_labels(values: Any, name: str) -> list[Label]:
    """The sequence ``values`` (a list, tuple or 1-D array) as plain labels, by :func:`as_label`."""
    if isinstance(values, (str, bytes)):
        kind = "string" if isinstance(values, str) else "bytes object"
        raise InputTypeError(f"{name} must be a sequence of labels, not a single {kind}")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InputError(f"{name} must be one-dimensional, got shape {values.shape}")
        values = list(values)
    else:
        try:
            values = list(values)
        except TypeError:
            raise InputTypeError(f"{name} must be a sequence of labels, got {type(values).__name__}") from None
    return [as_label(value, f"{name}[{i}]") for i, value in enumerate(values)]


def check_classes(classes: Any, max_ways: int, where: str) -> None:
    """Raise InputError / InputTypeError unless ``classes`` is a list of 2..max_ways distinct plain labels."""
    if not isinstance(classes, list):
        raise InputTypeError(f"{where} must be a list, got {type(classes).__name__}")
    if not 2 <= len(classes) <= max_ways:
        raise InputError(f"{where} has {len(classes)} classes; this artifact takes 2..{max_ways}")
    for i, label in enumerate(classes):
        if type(label) not in (str, int, float, bool) or as_label(label, f"{where}[{i}]") != label:
            raise InputTypeError(f"{where}[{i}] must be a plain string, integer or finite float")
    if len(set(classes)) != len(classes):
        raise InputError(f"{where} repeats a class")


def _text(value: str, where: str) -> str:
    if len(value) > MAX_LABEL_CHARS:
        raise InputError(f"{where} has {len(value)} characters; labels hold at most {MAX_LABEL_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where} is not valid Unicode (it holds a lone surrogate): it could not be saved") from None
    return value
