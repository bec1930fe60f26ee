"""The checks of the runtime's public arguments that are not data: paths, engine names and thread counts, each
refused with one clear message (InputTypeError for a wrong type, InputError for a wrong value)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Collection

from .errors import InputError, InputTypeError

MAX_THREADS = 256  # far above any device's cores; onnxruntime itself takes up to 2**31 - 1 and then fails to start


def path_argument(value: Any, name: str) -> Path:
    """``value`` (a str or os.PathLike naming a path as text) as a Path."""
    try:
        text = os.fspath(value)
    except TypeError:
        raise InputTypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}") from None
    if not isinstance(text, str):
        raise InputTypeError(f"{name} must be a path as text (str or os.PathLike), got {type(text).__name__}")
    if not text:
        raise InputError(f"{name} is an empty path")
    if "\0" in text:
        raise InputError(f"{name} holds a NUL character: not a usable path")
    return Path(text)


def threads_argument(value: Any) -> int | None:
    """``value`` as a thread count: None (the engine's choice) or an integer in [1, MAX_THREADS]."""
    if value is None:
        return None
    if type(value) is not int:
        raise InputTypeError(f"threads must be a positive integer or None, got {type(value).__name__}")
    if not 1 <= value <= MAX_THREADS:
        raise InputError(f"threads must be a positive integer up to {MAX_THREADS} or None, got {value}")
    return value


def backend_argument(value: Any, registered: Collection[str]) -> str:
    """``value`` as the name of a registered engine."""
    if not isinstance(value, str):
        raise InputTypeError(f"backend must be an engine's name (str), got {type(value).__name__}")
    if value not in registered:
        raise InputError(f"unknown backend {value!r}; choose from {sorted(registered)} (edgeadapt.runtime.backends."
                         "register_backend adds one)")
    return value
