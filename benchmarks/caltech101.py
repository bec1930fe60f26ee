"""Caltech-101 few-shot on a real pretrained backbone: the baselines a shipped model must beat, on the validation
classes of a fixed class-disjoint split of the 80 Caltech-101 classes in the data folder.

Every method classifies from the ImageNet MobileNet V1 embedding extractor's 1,024-d embeddings (the int8 TFLite
file Coral's weight imprinting uses), computed once per photo:

- ``imprinting``: Coral's weight imprinting on LiteRT's int8 embeddings: L2-normalised embeddings, each class the
  normalised mean of its support embeddings, the query's class the most cosine-similar one (no gradient step).
- ``simpleshot``: SimpleShot's CL2N (Wang et al., 2019) on the same embeddings: the mean embedding of the training
  classes subtracted, then L2-normalised, then the nearest class mean.
- ``imprinting (float import)``, ``simpleshot (float import)``: the same on the float backbone imported from that
  file (``edgeadapt import-weights``, ``--model mobilenet_v1_imagenet``), which meta-training starts from.

Photos are read as ``edgeadapt --data`` reads a folder: centre-cropped to square, Lanczos-resized to 224x224 RGB,
pixels p as (p - 128) / 128 (``--value-range -1 0.9921875``). Split: ``SplitRule(validation=0.3, seed=0)`` (24
validation classes, so that 20-way tasks exist; the rest train). Tasks: N-way K-shot with 15 queries per class,
``--tasks`` per cell (default 1,000), the same tasks for every method; accuracy as mean and 95% CI over tasks.

    python benchmarks/caltech101.py                  # writes its section of docs/benchmarks.md
    python benchmarks/caltech101.py --tasks 100      # quicker; prints only

The last line printed is JSON: {"cells": {"5w1s": {METHOD: [mean, ci95]}}, "split": {...}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.sdk.backbones import IMAGENET_VALUE_RANGE, BackboneSettings, build_backbone
from edgeadapt.sdk.datasets.base import ClassDataset
from edgeadapt.sdk.datasets.cache import read_arrays, write_arrays
from edgeadapt.sdk.datasets.source import DataSource, load_source
from edgeadapt.sdk.datasets.splits import SplitRule, split_classes
from edgeadapt.sdk.importers import read_tflite
from edgeadapt.sdk.tasks import EpisodeSampler

from report import markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
SPLIT = SplitRule(validation=0.3, seed=0)
CELLS = ((5, 1), (5, 5), (20, 1), (20, 5))
QUERIES = 15
IMAGE_SIZE = 224
CACHE = ROOT / "runs" / "caltech101"  # embeddings, keyed by the photos read and the model file
EXTRACTOR = Path("pretrained") / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


def data_folder(given: str | None) -> Path:
    """``--data``, else ``$EDGEADAPT_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(given or os.environ.get("EDGEADAPT_DATA") or ROOT.parent / "shared" / "data")


def photos(data: Path) -> ClassDataset:
    """Every Caltech-101 photo of the data folder as ``edgeadapt --data`` reads it for the imported MobileNet."""
    source = DataSource(data / "caltech101" / "images", image_size=IMAGE_SIZE, value_range=IMAGENET_VALUE_RANGE)
    return load_source(source)


def cached(name: str, key: bytes, compute) -> np.ndarray:
    """``compute()``, kept under :data:`CACHE` as ``name-<hash of key>.npz`` (the SDK's array cache) and reused while
    ``key`` is the same."""
    path = CACHE / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}.npz"
    stored = read_arrays(path)
    if stored is not None:
        return stored["values"]
    values = compute()
    write_arrays(path, {"values": values})
    return values


def litert_embeddings(model: Path, examples: torch.Tensor) -> np.ndarray:
    """LiteRT's dequantised embeddings of uint8 ``(n, 3, H, W)`` pictures, one at a time on one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(model), num_threads=1)
    interpreter.allocate_tensors()
    source, output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = output["quantization"]
    out = np.empty((len(examples), 1024), np.float32)
    for i, picture in enumerate(tqdm(examples.permute(0, 2, 3, 1).numpy(), desc="LiteRT embeddings", unit="photo")):
        interpreter.set_tensor(source["index"], picture[None])
        interpreter.invoke()
        out[i] = scale * (interpreter.get_tensor(output["index"]).reshape(-1).astype(np.float32) - zero)
    return out


def float_embeddings(model: Path, dataset: ClassDataset, batch: int = 32) -> np.ndarray:
    """The imported float backbone's embeddings (its ``features``, eval mode) of every photo of ``dataset``."""
    network = build_backbone("mobilenet_v1_imagenet", dataset.input_spec, BackboneSettings(ways=5))
    network.load_state_dict(read_tflite(model).state_dict, strict=False)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(dataset.examples), batch), desc="float embeddings", unit="batch"):
            out.append(network.features(dataset.decode(dataset.examples[start:start + batch])).numpy())
    return np.concatenate(out)


def embedded(dataset: ClassDataset, embeddings: np.ndarray) -> ClassDataset:
    """``dataset`` with each photo replaced by its embedding (so the SDK's sampler draws embedding tasks)."""
    return ClassDataset(torch.from_numpy(embeddings), dataset.class_sizes, dataset.class_names, dataset.groups,
                        InputSpec((embeddings.shape[1],), modality="vector", layout="C"))


def nearest_mean(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int) -> torch.Tensor:
    """Predicted class of each query: the most cosine-similar class mean of normalised embeddings (imprinting)."""
    support, query = torch.nn.functional.normalize(support, dim=-1), torch.nn.functional.normalize(query, dim=-1)
    means = torch.stack([support[support_y == c].mean(0) for c in range(ways)])
    return (query @ torch.nn.functional.normalize(means, dim=-1).T).argmax(-1)


def accuracies(dataset: ClassDataset, ways: int, shots: int, tasks: int, centre: torch.Tensor | None) -> np.ndarray:
    """Per-task accuracy of the nearest normalised class mean (``centre`` subtracted first: SimpleShot)."""
    sampler = EpisodeSampler(dataset, ways, shots, QUERIES, seed=1000 * ways + shots)
    generator = torch.Generator().manual_seed(sampler.seed)
    scores = []
    for start in range(0, tasks, 100):
        batch = sampler.draw(min(100, tasks - start), generator)
        for sx, sy, qx, qy in zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y):
            if centre is not None:
                sx, qx = sx - centre, qx - centre
            scores.append(float((nearest_mean(sx, sy, qx, ways) == qy).float().mean()))
    return np.asarray(scores)


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width (normal approximation over tasks), in percent."""
    return 100 * float(values.mean()), 100 * 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values))


def evaluate(train: ClassDataset, validation: ClassDataset, embeddings: dict[str, np.ndarray], tasks: int,
             index: dict[str, np.ndarray]) -> dict[str, dict[str, tuple[float, float]]]:
    """Every cell for every method: ``{"5w1s": {method: (mean, ci95)}}``."""
    cells: dict[str, dict[str, tuple[float, float]]] = {}
    for ways, shots in CELLS:
        row = {}
        for source, values in embeddings.items():
            val = embedded(validation, values[index["validation"]])
            centre = torch.from_numpy(values[index["train"]].mean(0))
            suffix = "" if source == "int8" else " (float import)"
            row["imprinting" + suffix] = mean_ci(accuracies(val, ways, shots, tasks, None))
            row["simpleshot" + suffix] = mean_ci(accuracies(val, ways, shots, tasks, centre))
        cells[f"{ways}w{shots}s"] = row
        print(f"{ways}-way {shots}-shot:", {m: f"{a:.1f} ± {c:.1f}" for m, (a, c) in row.items()}, flush=True)
    return cells


def split_rows(dataset: ClassDataset) -> tuple[ClassDataset, ClassDataset, dict[str, np.ndarray]]:
    """The split's two sides and the rows of ``dataset`` each holds."""
    train, validation = split_classes(dataset, SPLIT)
    starts = dataset.starts.tolist()
    rows = {name: np.concatenate([np.arange(starts[c], starts[c] + dataset.class_sizes[c])
                                  for c, n in enumerate(dataset.class_names) if n in side.class_names])
            for name, side in (("train", train), ("validation", validation))}
    return train, validation, rows


def write(cells: dict, validation: ClassDataset, train: ClassDataset, tasks: int) -> None:
    """This benchmark's section of docs/benchmarks.md."""
    methods = list(next(iter(cells.values())))
    rows = [[m, *[f"{cells[c][m][0]:.1f} ± {cells[c][m][1]:.1f}" for c in cells]] for m in methods]
    body = ["## Caltech-101: the baselines on a pretrained ImageNet backbone", "",
            f"The {validation.n_classes} validation classes of a fixed class-disjoint split of the 80 classes in the "
            f"data folder (`SplitRule(validation=0.3, seed=0)`; {train.n_classes} classes train, 21 further classes "
            "are held out of this project entirely): " + ", ".join(validation.class_names) + ". "
            f"{tasks:,} tasks per cell, {QUERIES} queries per class, the same tasks for every method; accuracy (%) as "
            "mean ± 95% CI over tasks. Photos centre-cropped and resized to 224x224 as `edgeadapt --data` reads "
            "them. Every method is a nearest class mean on the MobileNet V1 ImageNet embedding extractor's 1,024-d "
            "embeddings, with no gradient step: `imprinting` (Coral's weight imprinting: L2-normalised embeddings, "
            "cosine to the normalised class means) and `simpleshot` (the training classes' mean embedding subtracted "
            "before normalising) on LiteRT's int8 embeddings, and the same on the float backbone imported from that "
            "file (`edgeadapt import-weights`), which meta-training starts from.", "",
            *markdown_table(["method", *[c.replace("w", "-way ").replace("s", "-shot") for c in cells]], rows)]
    write_section("caltech101-baselines", "\n".join(body), "python benchmarks/caltech101.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data folder holding caltech101/ and pretrained/")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per cell (default: 1000; docs only at 1000+)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = data_folder(args.data)
    model = data / EXTRACTOR
    dataset = photos(data)
    key = hashlib.sha256(dataset.examples.numpy()).digest() + model.read_bytes()  # the photos as read, the model
    embeddings = {"int8": cached("litert", key, lambda: litert_embeddings(model, dataset.examples)),
                  "float": cached("float", key, lambda: float_embeddings(model, dataset))}
    train, validation, index = split_rows(dataset)
    cells = evaluate(train, validation, embeddings, args.tasks, index)
    if args.tasks >= 1000:
        write(cells, validation, train, args.tasks)
    print(json.dumps({"cells": cells, "split": {"train": list(train.class_names),
                                                "validation": list(validation.class_names)}}))


if __name__ == "__main__":
    main()
