"""An export that replaces an earlier one of the same model (``edgeadapt export --replaces OLD``): the states users
saved with the old artifact restore in the new one.

A saved state names the artifact it was adapted from, and ``restore`` refuses others; a re-export (a new format,
new graphs) is another artifact. The new one may restore the old one's states only if it computes what the old one
did, which is checked here on the old artifact's self-check task: the same inputs, and PyTorch's probabilities at
both export times within :data:`SAME_PROBABILITIES`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgeadapt.runtime.format.files import sha256_file
from edgeadapt.runtime.format.names import ADAPT_ONNX, MANIFEST, SELFCHECK
from edgeadapt.sdk.errors import ConfigError

SAME_PROBABILITIES = 1e-5
MAX_MANIFEST_BYTES = 1 << 20


def predecessor_identities(old: str | os.PathLike, new: Path) -> list[str]:
    """The artifacts whose states the new one (being written in the folder ``new``) restores: ``old``'s own identity
    (its ``adapt.onnx`` sha256) and those ``old`` restored, less the new one's own. ConfigError unless both compute
    the same on ``old``'s self-check task."""
    folder = Path(old)
    files = [folder / name for name in (MANIFEST, ADAPT_ONNX, SELFCHECK)]
    if not all(f.is_file() for f in files) or files[0].stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"--replaces {folder}: not an artifact folder (it needs {MANIFEST}, {ADAPT_ONNX} and "
                          f"{SELFCHECK})")
    try:
        with np.load(files[2], allow_pickle=False) as before, np.load(new / SELFCHECK, allow_pickle=False) as now:
            same = _same_task(before, now)
        earlier = json.loads(files[0].read_text()).get("restores_states_of", [])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"--replaces {folder}: unreadable ({e})") from e
    if not same:
        raise ConfigError(f"--replaces {folder}: this export does not compute what that artifact computes (its "
                          f"self-check task gives other probabilities), so its saved states would not mean the same")
    own = sha256_file(new / ADAPT_ONNX)
    identities = [sha256_file(files[1]), *[d for d in earlier if isinstance(d, str)]]
    return list(dict.fromkeys(d for d in identities if d != own))


def _same_task(before: np.lib.npyio.NpzFile, now: np.lib.npyio.NpzFile) -> bool:
    """Whether two self-check tasks have the same inputs and probabilities within :data:`SAME_PROBABILITIES`."""
    inputs = ("support_x", "support_y", "query_x")
    if any(before[k].shape != now[k].shape or not np.array_equal(before[k], now[k]) for k in inputs):
        return False
    a, b = before["probabilities"], now["probabilities"]
    return a.shape == b.shape and float(np.abs(a - b).max()) <= SAME_PROBABILITIES
