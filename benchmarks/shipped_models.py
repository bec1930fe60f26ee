"""What a shipped model costs on the device: artifact bytes, adapt and predict latency on one thread, peak memory.

    python benchmarks/shipped_models.py NAME=ARTIFACT [NAME=ARTIFACT ...] [--repeats 20]

For each artifact (an exported folder): its bytes by file kind (the ONNX graphs, their ``.ort`` copies, the
ExecuTorch program), the bytes of the weights its computation uses (the model's features, parameters and
normalisation statistics, float32, and its head where the head is learned rather than made per task), and each
kind's bytes as a multiple of those (a target loads one kind); the median latency
of ``adapt`` on a 5-way 5-shot support set and of ``predict`` on 75 queries through ``edgeadapt.runtime``
(onnxruntime, one thread, after one warm-up call; contenders interleaved round by round so that machine load
touches all alike); and the peak resident memory (VmHWM) of a fresh process that imports the runtime, loads the
artifact, adapts once and predicts once, one thread (the job of ``deployment_footprint.py``). Inputs are drawn
uniformly within the artifact's input range: latency and memory do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import edgeadapt.runtime as rt
from deployment_footprint import RUNTIME_JOB, weight_bytes
from report import markdown_table, write_section

WAYS, SHOTS, QUERIES = 5, 5, 15
KINDS = {".onnx": "ONNX", ".ort": ".ort", ".pte": ".pte"}


def task(manifest: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """A 5-way 5-shot support set and 15 queries per class, uniform within the input range."""
    low, high = manifest["input"]["range"]
    shape = tuple(manifest["input_shape"])
    rng = np.random.default_rng(seed)
    draw = lambda n: rng.uniform(low, high, (n, *shape)).astype(np.float32)  # noqa: E731
    return {"support_x": draw(WAYS * SHOTS), "support_y": np.repeat(np.arange(WAYS), SHOTS),
            "query_x": draw(WAYS * QUERIES)}


def sizes(folder: Path, manifest: dict) -> dict[str, float]:
    """MB by file kind, the MB of the weights (:func:`weight_bytes`), and each kind as a multiple of those."""
    out = {kind: 0.0 for kind in KINDS.values()}
    for path in folder.iterdir():
        if path.suffix in KINDS:
            out[KINDS[path.suffix]] += path.stat().st_size / 1e6
    out["weights"] = weight_bytes(manifest) / 1e6
    return out


def peak_memory(folder: Path, examples: dict[str, np.ndarray], backend: str = "onnxruntime") -> float:
    """Peak resident MB of a fresh one-thread process that loads ``folder`` (through ``backend``), adapts and
    predicts once."""
    with tempfile.TemporaryDirectory() as tmp:
        task_file = Path(tmp) / "task.npz"
        np.savez(task_file, **examples)
        out = subprocess.run([sys.executable, "-c", RUNTIME_JOB, str(folder), str(task_file), backend],
                             capture_output=True,
                             text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def latencies(learners: dict[str, rt.Learner], examples: dict[str, dict[str, np.ndarray]],
              repeats: int) -> dict[str, dict[str, float]]:
    """Median adapt and predict milliseconds per artifact, rounds interleaved."""
    times: dict[str, dict[str, list[float]]] = {name: {"adapt": [], "predict": []} for name in learners}
    for round_ in range(repeats + 1):
        for name, learner in learners.items():
            x = examples[name]
            start = time.perf_counter()
            adapted = learner.adapt(x["support_x"], x["support_y"].tolist())
            middle = time.perf_counter()
            adapted.predict(x["query_x"])
            end = time.perf_counter()
            if round_:  # the first round warms up
                times[name]["adapt"].append(1000 * (middle - start))
                times[name]["predict"].append(1000 * (end - middle))
    return {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}


def measure(artifacts: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    """Every figure of every artifact."""
    learners = {name: rt.load(folder, threads=1) for name, folder in artifacts.items()}
    examples = {name: task(learner.manifest) for name, learner in learners.items()}
    timing = latencies(learners, examples, repeats)
    return {name: {**sizes(folder, learners[name].manifest), **timing[name],
                   "peak_rss_mb": peak_memory(folder, examples[name]), "scope": learners[name].manifest["scope"]}
            for name, folder in artifacts.items()}


def write(results: dict[str, dict[str, float]], command: str, repeats: int) -> None:
    """This benchmark's section of docs/benchmarks.md."""
    def mb(r: dict[str, float], kind: str) -> str:
        return f"{r[kind]:.2f} ({r[kind] / r['weights']:.2f}x)" if r[kind] else "-"

    rows = [[name, str(r["scope"]), f"{r['weights']:.2f}", mb(r, "ONNX"), mb(r, ".ort"), mb(r, ".pte"),
             f"{r['adapt']:.1f}", f"{r['predict']:.1f}", f"{r['peak_rss_mb']:.0f}"] for name, r in results.items()]
    body = ["## Shipped models on the device: size, latency, memory", "",
            f"Each artifact through `edgeadapt.runtime` (onnxruntime, one thread): `adapt` on a {WAYS}-way "
            f"{SHOTS}-shot support set and `predict` on {WAYS * QUERIES} queries, median of {repeats} interleaved "
            "rounds after a warm-up; peak memory is the peak resident set (VmHWM) of a fresh process that imports "
            "the runtime, loads the artifact, adapts once and predicts once. Sizes in MB (10^6 bytes) per file kind, "
            "and in brackets as a multiple of the weights the computation uses (float32 features, parameters and "
            "normalisation statistics, and a learned head; issue 30's goal: at most 1.1x), a target loading one "
            "kind; the frozen layers are stored once, in `embed`; `-`: the artifact has no such file (its ExecuTorch program was not built). `caltech101-mobilenet-last-block` is "
            "its validation twin (the same network and recipe, 56 classes) exported to adapt its last block as well "
            "(`edgeadapt export --scope last_block`), for the cost of that choice.", "",
            *markdown_table(["artifact", "adapts", "weights MB", "ONNX MB", ".ort MB", ".pte MB", "adapt ms", "predict ms",
                             "peak MB"], rows)]
    write_section("shipped-models", "\n".join(body), command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifacts", nargs="+", metavar="NAME=ARTIFACT", help="a name and an exported folder")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)  # nothing here runs torch; the report's machine line names one thread, as measured
    artifacts = {pair.split("=", 1)[0]: Path(pair.split("=", 1)[1]) for pair in args.artifacts}
    results = measure(artifacts, args.repeats)
    print(json.dumps(results, indent=1))
    if not args.no_write:
        write(results, "python benchmarks/shipped_models.py " + " ".join(shlex.quote(a) for a in args.artifacts),
              args.repeats)


if __name__ == "__main__":
    main()
