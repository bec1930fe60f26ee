"""Shared by the tests of the JavaScript targets (test_web_demo.py, test_node_runner.py): the web demo's bundled
Omniglot drawings as the SDK pre-processes them, a fixed task built from them, and tools that CI must have."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeadapt.sdk.datasets.omniglot import preprocess_omniglot

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "web" / "samples.json"
PRETRAINED = ROOT / "models" / "omniglot-conv4"
TOLERANCE = 1e-4
SUPPORT_SHOTS = 2  # drawings 0..1 of each character are the support set, the last drawing the query


def require(ready: bool, reason: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail under CI, which installs every tool."""
    if not ready:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI installs it: see .ci/run)")
        pytest.skip(reason)


def raw_drawings() -> list[list[np.ndarray]]:
    """The bundled drawings as 8-bit grayscale (105, 105), ink 0 on 255, per character."""
    characters = json.loads(SAMPLES.read_text())["characters"]
    result = []
    for character in characters:
        height, width = character["shape"]
        drawings = []
        for bits in character["ink"]:
            ink = np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8))[: height * width]
            drawings.append(np.where(ink.reshape(height, width), 0, 255).astype(np.uint8))
        result.append(drawings)
    return result


def fixed_task(ways: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """(support_x, query_x, support ids, query ids) for the first ``ways`` characters; ids are (character, drawing)."""
    drawings = raw_drawings()
    support = [(c, d) for c in range(ways) for d in range(SUPPORT_SHOTS)]
    query = [(c, len(drawings[c]) - 1) for c in range(ways)]

    def images(ids):
        return preprocess_omniglot(np.stack([drawings[c][d] for c, d in ids]))[:, None]

    return images(support), images(query), support, query
