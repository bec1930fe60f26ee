"""Optional dependencies, imported on first use with a one-line error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

PACKAGES = {"PIL": "Pillow", "optuna": "Optuna", "cryptography": "cryptography", "onnxruntime": "onnxruntime",
            "executorch": "ExecuTorch", "matplotlib": "matplotlib", "soundfile": "soundfile"}


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or :class:`MissingExtraError` saying that ``purpose`` needs the ``extra`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtraError(f"{purpose} needs {PACKAGES.get(top, top)}, which is not installed: "
                                f"pip install './[{extra}]'") from e
