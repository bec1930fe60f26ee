"""int8 artifacts against float on the other engines: ExecuTorch (XNNPACK) and onnxruntime-node.

    python benchmarks/int8_engines.py [--tasks 1000] [--repeats 20] [--node node]

Needs the executorch extra (``pip install './[executorch]'``) and Node.js with examples/node's packages
(``npm ci`` there). The models of ``int8_artifacts.py`` (the validation twins), exported again from their
checkpoints with the same settings, float and int8, each with an ExecuTorch program, into runs/int8-engines/:

- ExecuTorch: the program's bytes; adapt (5-way 5-shot) and predict (75 queries) latency through
  ``edgeadapt.runtime``'s executorch backend (XNNPACK, one thread, interleaved rounds); the peak memory of a fresh
  process that loads the program, adapts and predicts once; accuracy through that backend on ``--tasks`` tasks per
  cell (each input embedded once by the program's embed method). ExecuTorch quantises its own way (XNNPACKQuantizer:
  int8 activations, signed), so its accuracy is measured here, not taken from onnxruntime's.
- onnxruntime-node: adapt and predict latency of ``examples/node/run.mjs`` on the same task (median of
  ``--repeats`` calls after a first, one thread; float and int8 runs alternated three times, the median taken),
  and the largest difference of its probabilities from the Python runtime's on that task. Node runs the ONNX
  graphs that onnxruntime runs, so their accuracy is ``int8_artifacts.py``'s.

Goals (issue 30): int8 bytes <= 0.35x float, adapt + predict <= 0.7x, accuracy within 0.5 points on every cell.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

import edgeadapt.runtime as rt
from caltech101 import data_folder
from deployment import ROOT
from int8_artifacts import accuracy, export_like, sources
from report import markdown_table, write_section
from shipped_models import latencies, peak_memory, task

OUT = ROOT / "runs" / "int8-engines"
NODE_RUNNER = ROOT / "examples" / "node"
ALTERNATIONS = 3  # float and int8 Node runs, alternated


def engine_pairs(data: Path) -> dict[str, tuple[Path, Path, object]]:
    """Per model: its float and int8 artifacts with ExecuTorch programs (exported here), and its validation
    classes."""
    out = {}
    for name, (artifact, checkpoint, training, validation) in sources(data).items():
        out[name] = (export_like(artifact, checkpoint, OUT / f"{name}-float", None, executorch=True),
                     export_like(artifact, checkpoint, OUT / f"{name}-int8", training, executorch=True), validation)
    return out


def executorch_figures(folders: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    """Per kind (float, int8): .pte MB, adapt and predict ms (interleaved) and peak MB through ExecuTorch."""
    learners = {kind: rt.load(folder, backend="executorch", threads=1) for kind, folder in folders.items()}
    examples = {kind: task(learner.manifest) for kind, learner in learners.items()}
    timing = latencies(learners, examples, repeats)
    return {kind: {**timing[kind], "pte_mb": (folder / "model.pte").stat().st_size / 1e6,
                   "peak_rss_mb": peak_memory(folder, examples[kind], "executorch")}
            for kind, folder in folders.items()}


def node_run(node: str, folder: Path, example: dict[str, np.ndarray], tmp: Path, repeats: int) -> dict:
    """One run of the Node.js runner on ``example``: its JSON result (median times of ``repeats`` calls)."""
    np.save(tmp / "support_x.npy", example["support_x"])
    np.save(tmp / "query_x.npy", example["query_x"])
    (tmp / "support_y.json").write_text(json.dumps(example["support_y"].tolist()))
    done = subprocess.run([node, "run.mjs", str(folder), "--support-x", str(tmp / "support_x.npy"), "--support-y",
                           str(tmp / "support_y.json"), "--query-x", str(tmp / "query_x.npy"), "--threads", "1",
                           "--repeats", str(repeats)], cwd=NODE_RUNNER, capture_output=True, text=True, timeout=900,
                          check=True)
    return json.loads(done.stdout)


def node_figures(node: str, folders: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    """Per kind: Node's adapt and predict ms (median over the alternations) and its largest probability difference
    from the Python runtime's (onnxruntime) on the same task."""
    runs: dict[str, list[dict]] = {kind: [] for kind in folders}
    examples = {kind: task(rt.load(folder).manifest) for kind, folder in folders.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ALTERNATIONS):
            for kind, folder in folders.items():
                runs[kind].append(node_run(node, folder, examples[kind], Path(tmp), repeats))
    out = {}
    for kind, folder in folders.items():
        x = examples[kind]
        expected = rt.load(folder, threads=1).adapt(x["support_x"], x["support_y"].tolist()).predict_proba(x["query_x"])
        difference = max(float(np.abs(np.array(r["probabilities"]) - expected).max()) for r in runs[kind])
        out[kind] = {"adapt": statistics.median(r["adapt_ms"] for r in runs[kind]),
                     "predict": statistics.median(r["predict_ms"] for r in runs[kind]),
                     "difference": difference, "engine": runs[kind][0]["engine"]}
    return out


def _ratio(figures: dict[str, dict[str, float]]) -> str:
    f, q = figures["float"], figures["int8"]
    return f"{(q['adapt'] + q['predict']) / (f['adapt'] + f['predict']):.2f}x"


def write(results: dict[str, dict], tasks: int, repeats: int) -> None:
    """This benchmark's section of docs/benchmarks.md."""
    executorch, node, cells = [], [], []
    for name, r in results.items():
        e, n = r["executorch"], r["node"]
        executorch.append([name, f"{e['float']['pte_mb']:.2f} / {e['int8']['pte_mb']:.2f} "
                           f"({e['int8']['pte_mb'] / e['float']['pte_mb']:.2f}x)",
                           f"{e['float']['adapt']:.1f} / {e['int8']['adapt']:.1f}",
                           f"{e['float']['predict']:.1f} / {e['int8']['predict']:.1f}", _ratio(e),
                           f"{e['float']['peak_rss_mb']:.0f} / {e['int8']['peak_rss_mb']:.0f}"])
        node.append([name, n["float"]["engine"], f"{n['float']['adapt']:.1f} / {n['int8']['adapt']:.1f}",
                     f"{n['float']['predict']:.1f} / {n['int8']['predict']:.1f}", _ratio(n),
                     f"{n['float']['difference']:.1e} / {n['int8']['difference']:.1e}"])
        cells += [[name, c.replace("w", "-way ").replace("s", "-shot"),
                   *(f"{r[k][c][0]:.2f} ± {r[k][c][1]:.2f}" for k in ("float_accuracy", "int8_accuracy")),
                   f"{r['int8_accuracy'][c][0] - r['float_accuracy'][c][0]:+.2f}"] for c in r["float_accuracy"]]
    body = ["## int8 artifacts against float: ExecuTorch and onnxruntime-node", "",
            __doc__.split("\n\n", 2)[2].strip().replace("``", "`"), "",
            f"ExecuTorch (XNNPACK), float / int8, median of {repeats} rounds (MB, ms):", "",
            *markdown_table(["model", ".pte MB", "adapt ms", "predict ms", "adapt + predict, int8/float", "peak MB"],
                            executorch),
            "", f"ExecuTorch accuracy (%), {tasks:,} tasks per cell:", "",
            *markdown_table(["model", "cell", "float", "int8", "int8 - float (points)"], cells),
            "", "onnxruntime-node, float / int8 (ms):", "",
            *markdown_table(["model", "engine", "adapt ms", "predict ms", "adapt + predict, int8/float",
                             "max difference from the Python runtime"], node)]
    write_section("int8-engines", "\n".join(body), f"python benchmarks/int8_engines.py --tasks {tasks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the data folder (default: EDGEADAPT_DATA, else ../shared/data)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per cell (docs only at 1000+)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--node", default="node", help="the Node.js executable (default: node)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, (float_artifact, int8_artifact, classes) in engine_pairs(data_folder(args.data)).items():
        folders = {"float": float_artifact, "int8": int8_artifact}
        results[name] = {"executorch": executorch_figures(folders, args.repeats),
                         "node": node_figures(args.node, folders, args.repeats),
                         **{f"{kind}_accuracy": accuracy(folder, classes, args.tasks, "executorch")
                            for kind, folder in folders.items()}}
        print(name, json.dumps(results[name]), flush=True)
    if args.tasks >= 1000:
        write(results, args.tasks, args.repeats)


if __name__ == "__main__":
    main()
