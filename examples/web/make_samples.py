"""Write the web demo's bundled sample drawings (samples.json) from the Omniglot *background* set.

    python examples/web/make_samples.py [--omniglot images_background.zip] [--alphabet Greek] [--characters 5]

Each drawing is kept as the raw 105x105 1-bit PNG (ink bits, packed with numpy.packbits, base64), so the page
pre-processes it exactly as it pre-processes a drawing made on its canvas. The evaluation set is never used.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "samples.json"
DATA = Path(os.environ.get("EDGEADAPT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def ink_bits(png: bytes) -> tuple[str, list[int]]:
    """(base64 of the packed ink bits, [height, width]) of one Omniglot PNG (ink is black)."""
    ink = ~np.asarray(Image.open(io.BytesIO(png)).convert("1"), dtype=bool)
    return base64.b64encode(np.packbits(ink.ravel()).tobytes()).decode(), list(ink.shape)


def sample_set(archive: zipfile.ZipFile, alphabet: str, characters: int, drawings: int) -> dict:
    """The first ``drawings`` drawings of the first ``characters`` characters of ``alphabet``."""
    prefix = f"images_background/{alphabet}/"
    names = sorted(n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".png"))
    if not names:
        raise SystemExit(f"no drawings of {alphabet!r} in the background set")
    chosen = sorted({n[len(prefix):].split("/")[0] for n in names})[:characters]
    result = []
    for character in chosen:
        pngs = [n for n in names if n.startswith(f"{prefix}{character}/")][:drawings]
        encoded = [ink_bits(archive.read(n)) for n in pngs]
        result.append({"name": f"{alphabet}/{character}", "files": [Path(n).name for n in pngs],
                       "shape": encoded[0][1], "ink": [bits for bits, _ in encoded]})
    return {"source": "Omniglot images_background (Lake et al., MIT licence)", "characters": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", type=Path, default=DATA / "omniglot" / "images_background.zip")
    parser.add_argument("--alphabet", default="Greek")
    parser.add_argument("--characters", type=int, default=5)
    parser.add_argument("--drawings", type=int, default=6)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with zipfile.ZipFile(args.omniglot) as archive:
        samples = sample_set(archive, args.alphabet, args.characters, args.drawings)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent)
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(samples, f, separators=(",", ":"))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(samples['characters'])} characters x {args.drawings} drawings")


if __name__ == "__main__":
    main()
