"""int8 artifacts against their float originals: size, latency, peak memory and accuracy through the runtime.

    python benchmarks/int8_artifacts.py [--tasks 1000] [--repeats 20]

Two float artifacts and their int8 exports (``edgeadapt export --quantize int8``: the frozen layers in int8, scales
calibrated on 256 examples of the model's training classes; adapt and predict float):

- ``omniglot-conv4``: the shipped model's validation twin (``runs/omniglot-conv4-train/artifact`` from
  ``bash models/reproduce_omniglot_conv4.sh train``), calibrated on the 24 training alphabets of the background
  set, scored on the 6 validation alphabets it never saw.
- ``caltech101-mobilenet``: the validation twin (``runs/caltech101-mobilenet-train`` from
  ``bash models/reproduce_caltech101_mobilenet.sh train``), calibrated on its 56 training classes, scored on the 24
  validation classes it never saw.

Size, latency (adapt 5-way 5-shot, predict 75 queries; onnxruntime, one thread, interleaved rounds) and peak memory
as ``shipped_models.py`` measures them, in the same run; accuracy through ``edgeadapt.runtime`` on ``--tasks``
tasks per cell, the same tasks for both (each input embedded once by the artifact's own embed program, 15 queries
per class), mean ± 95% CI. Goals (issue 30): int8 bytes <= 0.35x float, adapt + predict <= 0.7x, accuracy within
0.5 points on every cell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import edgeadapt.runtime as rt
from caltech101 import CELLS, SPLIT, cell_sampler, data_folder, embedded, mean_ci, photos, runtime_features
from deployment import ROOT
from edgeadapt.export import export_artifact
from edgeadapt.export.quantize import calibration_sample
from edgeadapt.sdk.datasets.base import ClassDataset
from edgeadapt.sdk.datasets.splits import split_classes
from edgeadapt.sdk.recipes import dataset_classes
from report import markdown_table, write_section
from shipped_models import measure

OUT = ROOT / "runs" / "int8"
CALTECH_TWIN = ROOT / "runs" / "caltech101-mobilenet-train"
OMNIGLOT_TWIN = ROOT / "runs" / "omniglot-conv4-train"


def int8_twin(name: str, float_artifact: Path, checkpoint: Path, training: ClassDataset) -> Path:
    """``float_artifact`` exported again from ``checkpoint`` with the same settings and int8 frozen layers."""
    return export_like(float_artifact, checkpoint, OUT / name, training, executorch=False)


def export_like(float_artifact: Path, checkpoint: Path, out: Path, training: ClassDataset | None,
                executorch: bool) -> Path:
    """``float_artifact`` exported again from ``checkpoint`` to ``out`` with the same settings: int8 frozen layers
    calibrated on ``training`` (float without), an ExecuTorch program if ``executorch``."""
    manifest = json.loads((float_artifact / "manifest.json").read_text())
    settings = {k: manifest[k] for k in ("scope", "head_init", "head_scale", "inner_steps", "inner_lr")}
    quantized = {} if training is None else {"quantize": "int8", "calibration": calibration_sample(training)}
    return export_artifact(checkpoint, out, manifest["max_ways"], manifest["max_shots"], executorch=executorch,
                           overwrite=True, **quantized, **settings)


def accuracy(artifact: Path, classes: ClassDataset, tasks: int,
             backend: str = "onnxruntime") -> dict[str, tuple[float, float]]:
    """Per cell, accuracy (mean, 95% CI in points) of ``artifact`` through the runtime's ``backend``, every input
    embedded once."""
    learner = rt.load(artifact, backend=backend, threads=1)
    features, identity = runtime_features(learner, classes)
    inputs = embedded(classes, features)
    out = {}
    for ways, shots in CELLS:
        sampler, correct = cell_sampler(inputs, ways, shots), []
        for _ in tqdm(range(tasks), desc=f"{artifact.name} {backend} {ways}-way {shots}-shot", unit="task"):
            task = sampler.sample(1)
            support, queries = (rt.Embeddings(t[0].numpy(), identity) for t in (task.support_x, task.query_x))
            predicted = learner.adapt(support, task.support_y[0].tolist()).predict_proba(queries).argmax(1)
            correct.append(float((predicted == task.query_y[0].numpy()).mean()))
        out[f"{ways}w{shots}s"] = mean_ci(np.asarray(correct))
    return out


def sources(data: Path) -> dict[str, tuple[Path, Path, ClassDataset, ClassDataset]]:
    """Per model: the float artifact, the checkpoint it was exported from, the classes int8 is calibrated on and
    those accuracy is measured on."""
    omniglot = data / "omniglot" / "images_background.zip"
    caltech_train, caltech_validation = split_classes(photos(data), SPLIT)
    return {"omniglot-conv4": (OMNIGLOT_TWIN / "artifact", OMNIGLOT_TWIN / "checkpoint",
                               dataset_classes("omniglot", omniglot, "train"),
                               dataset_classes("omniglot", omniglot, "validation")),
            "caltech101-mobilenet": (CALTECH_TWIN, ROOT / "runs" / "caltech101-pretrain-train" / "checkpoint",
                                     caltech_train, caltech_validation)}


def pairs(data: Path) -> dict[str, tuple[Path, Path, ClassDataset]]:
    """Per model: the float artifact, its int8 twin (exported here) and the classes accuracy is measured on."""
    return {name: (artifact, int8_twin(name, artifact, checkpoint, training), validation)
            for name, (artifact, checkpoint, training, validation) in sources(data).items()}


def write(results: dict[str, dict], tasks: int, repeats: int) -> None:
    """This benchmark's section of docs/benchmarks.md."""
    rows = []
    for name, r in results.items():
        f, q = r["float"], r["int8"]
        latency = (q["adapt"] + q["predict"]) / (f["adapt"] + f["predict"])
        rows.append([name, f"{f['ONNX']:.2f} / {q['ONNX']:.2f} ({q['ONNX'] / f['ONNX']:.2f}x)",
                     f"{f['.ort']:.2f} / {q['.ort']:.2f} ({q['.ort'] / f['.ort']:.2f}x)",
                     f"{f['adapt']:.1f} / {q['adapt']:.1f}", f"{f['predict']:.1f} / {q['predict']:.1f}",
                     f"{latency:.2f}x", f"{f['peak_rss_mb']:.0f} / {q['peak_rss_mb']:.0f}"])
    cells = [[name, c.replace("w", "-way ").replace("s", "-shot"), f"{r['float_accuracy'][c][0]:.2f} ± "
              f"{r['float_accuracy'][c][1]:.2f}", f"{r['int8_accuracy'][c][0]:.2f} ± {r['int8_accuracy'][c][1]:.2f}",
              f"{r['int8_accuracy'][c][0] - r['float_accuracy'][c][0]:+.2f}"]
             for name, r in results.items() for c in r["float_accuracy"]]
    body = ["## int8 artifacts against float", "", __doc__.split("\n\n", 2)[2].strip().replace("``", "`"), "",
            f"Float / int8, median of {repeats} rounds (MB, ms):", "",
            *markdown_table(["model", "ONNX MB", ".ort MB", "adapt ms", "predict ms", "adapt + predict, int8/float",
                             "peak MB"], rows),
            "", f"Accuracy (%) through the runtime, {tasks:,} tasks per cell:", "",
            *markdown_table(["model", "cell", "float", "int8", "int8 - float (points)"], cells)]
    write_section("int8-artifacts", "\n".join(body), f"python benchmarks/int8_artifacts.py --tasks {tasks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the data folder (default: EDGEADAPT_DATA, else ../shared/data)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per cell (docs only at 1000+)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = data_folder(args.data)
    results = {}
    for name, (float_artifact, int8_artifact, classes) in pairs(data).items():
        timing = measure({"float": float_artifact, "int8": int8_artifact}, args.repeats)
        results[name] = {**timing, "float_accuracy": accuracy(float_artifact, classes, args.tasks),
                         "int8_accuracy": accuracy(int8_artifact, classes, args.tasks)}
        print(name, json.dumps(results[name]), flush=True)
    if args.tasks >= 1000:
        write(results, args.tasks, args.repeats)


if __name__ == "__main__":
    main()
