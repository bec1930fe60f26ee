"""Write the sample inputs that the documented runtime snippets and ``node run.mjs`` read (this folder).

    python examples/samples/make_samples.py [--out examples/samples]

Four characters of the built-in procedural glyphs (``edgeadapt.sdk.datasets.make_glyphs``, glyph set 7, which
no shipped model or default recipe trains on), in the shipped Omniglot model's input convention (float32
(n, 1, 28, 28), ink = 1.0 on 0.0):

- ``support_x.npy`` / ``support_y.json``: 5 drawings each of ``glyph-a``, ``glyph-b``, ``glyph-c``;
- ``query_x.npy`` / ``query_y.json``: 4 other drawings of each (the truth, to check predictions against);
- ``new_x.npy`` / ``new_y.json``: 5 drawings of a new class ``glyph-d`` and one more of ``glyph-a``, for ``update``.

Deterministic: tests/test_documented_commands.py checks that the committed files equal a fresh run's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeadapt.sdk.datasets import make_glyphs

HERE = Path(__file__).resolve().parent
GLYPH_SET = 7
NAMES = ("glyph-a", "glyph-b", "glyph-c", "glyph-d")
SHOTS, QUERIES = 5, 4


def samples() -> dict[str, np.ndarray | list[str]]:
    """Every sample file's content, by file name."""
    drawings = make_glyphs(len(NAMES), n_drawings=SHOTS + QUERIES + 1, seed=GLYPH_SET).images.numpy()
    known = range(len(NAMES) - 1)
    return {
        "support_x.npy": np.concatenate([drawings[c, :SHOTS] for c in known]),
        "support_y.json": [NAMES[c] for c in known for _ in range(SHOTS)],
        "query_x.npy": np.concatenate([drawings[c, SHOTS:SHOTS + QUERIES] for c in known]),
        "query_y.json": [NAMES[c] for c in known for _ in range(QUERIES)],
        "new_x.npy": np.concatenate([drawings[3, :SHOTS], drawings[0, -1:]]),
        "new_y.json": [NAMES[3]] * SHOTS + [NAMES[0]],
    }


def write(out: Path) -> None:
    """Write :func:`samples` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in samples().items():
        if name.endswith(".npy"):
            np.save(out / name, np.ascontiguousarray(content, dtype=np.float32))
        else:
            (out / name).write_text(json.dumps(content) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: %(default)s)")
    write(parser.parse_args().out)
