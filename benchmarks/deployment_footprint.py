"""Cold start, peak memory and artifact size of the runtime against a PyTorch process doing the same work.

    python benchmarks/deployment_footprint.py [--runs 5]

Each run is a fresh Python process that imports its stack, loads the pretrained model, adapts it
to one 5-way 5-shot task and predicts 25 queries: once through ``edgeadapt.runtime`` (onnxruntime;
the process checks that torch never gets imported) and once through PyTorch (``edgeadapt.sdk``).
Goal: the runtime's peak RSS at most 0.3x PyTorch's. Artifact size: the ONNX graphs (embed, adapt, predict)
against the bytes of the weights they compute with (:func:`weight_bytes`; goal: at most 1.1x, issue 30).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deployment import PRETRAINED, ROOT, tasks
from edgeadapt.sdk.datasets import find_data_dir
from edgeadapt.sdk.models import build_model
from report import markdown_table, write_section


def weight_bytes(manifest: dict) -> int:
    """Bytes of the float weights the artifact's computation uses: the features' parameters and statistics, and
    the head's where it is learned (a per-task head starts from zeros or prototypes, stored nowhere)."""
    model = build_model(manifest["model"]["name"], manifest["model"]["config"])
    parts = [model.features] + ([model.head] if manifest.get("head_init", "learned") == "learned" else [])
    return sum(t.numel() * t.element_size() for part in parts for t in part.state_dict().values()
               if t.is_floating_point())


# Peak RSS of this process image. (getrusage's ru_maxrss would carry the parent's peak across exec.)
PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

RUNTIME_JOB = PEAK_RSS + """
import sys, time, numpy as np
start = time.perf_counter()
import edgeadapt.runtime as rt
learner = rt.load(sys.argv[1], backend=sys.argv[3] if len(sys.argv) > 3 else "onnxruntime", threads=1)
task = np.load(sys.argv[2])
adapted = learner.adapt(task["support_x"], task["support_y"].tolist())
adapted.predict(task["query_x"])
print(__import__("json").dumps({"seconds": time.perf_counter() - start, "torch": "torch" in sys.modules,
      "peak_rss_mb": peak_rss_mb()}))
"""

TORCH_JOB = PEAK_RSS + """
import sys, time, numpy as np
start = time.perf_counter()
import torch
from edgeadapt.sdk import load_checkpoint
from edgeadapt.sdk.inner_loop import inner_loop_from_config
torch.set_num_threads(1)
model, config = load_checkpoint(sys.argv[1] + "/checkpoint")
manifest = __import__("json").loads(open(sys.argv[1] + "/manifest.json").read())
inner = inner_loop_from_config(model, config["training"], scope=manifest["scope"])  # as the artifact adapts
task = np.load(sys.argv[2])
y = torch.from_numpy(task["support_y"])
mask = (torch.arange(model.head.out_features) <= y.max()).float()
inner.probabilities(torch.from_numpy(task["support_x"]), y, torch.from_numpy(task["query_x"]), mask).argmax(1)
print(__import__("json").dumps({"seconds": time.perf_counter() - start, "torch": True,
      "peak_rss_mb": peak_rss_mb()}))
"""


def run(job: str, task_file: str) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", job, str(PRETRAINED), task_file], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "EDGEADAPT_DATA": str(find_data_dir()), "PATH": "/usr/bin:/bin"},
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per contender")
    parser.add_argument("--out", default=str(ROOT / "runs" / "footprint-task.npz"),
                        help="where to keep the task the processes use")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    support_x, support_y, query_x, _ = next(tasks(5, 5, 1, seed=3))
    np.savez(args.out, support_x=support_x, support_y=support_y, query_x=query_x)
    results: dict[str, list[dict]] = {"edgeadapt.runtime (onnxruntime)": [], "PyTorch (edgeadapt.sdk)": []}
    for _ in range(args.runs):  # interleaved
        results["edgeadapt.runtime (onnxruntime)"].append(run(RUNTIME_JOB, args.out))
        results["PyTorch (edgeadapt.sdk)"].append(run(TORCH_JOB, args.out))
    if any(r["torch"] for r in results["edgeadapt.runtime (onnxruntime)"]):
        raise SystemExit("the runtime process imported torch")
    summary = {name: {key: statistics.median(r[key] for r in rs) for key in ("seconds", "process_seconds",
                                                                            "peak_rss_mb")}
               for name, rs in results.items()}
    torch_rss = summary["PyTorch (edgeadapt.sdk)"]["peak_rss_mb"]
    manifest = json.loads((PRETRAINED / "manifest.json").read_text())
    graphs = sum((PRETRAINED / f).stat().st_size for f in manifest["files"] if f.endswith(".onnx"))
    param_bytes = weight_bytes(manifest)
    lines = ["## Deployment: cold start, memory and size", "",
             f"Fresh process: import, load the pretrained model, adapt to one 5-way 5-shot task, predict 25 "
             f"queries; one thread; median of {args.runs} interleaved runs. Goal: runtime peak RSS <= 0.3x PyTorch's.",
             ""]
    lines += markdown_table(
        ["process", "in-process seconds", "process wall seconds (with interpreter start)", "peak RSS MB",
         "RSS vs PyTorch"],
        [[name, f"{s['seconds']:.2f}", f"{s['process_seconds']:.2f}", f"{s['peak_rss_mb']:.0f}",
          f"{s['peak_rss_mb'] / torch_rss:.2f}x"] for name, s in summary.items()])
    lines += ["", f"Artifact size: the weights it computes with {param_bytes / 1e6:.3f} MB (float32 features, "
              f"parameters and normalisation statistics; its head is made per task); the ONNX graphs (embed, adapt, "
              f"predict) {graphs / 1e6:.3f} MB = {graphs / param_bytes:.2f}x (goal <= 1.1x). Every file:", ""]
    lines += markdown_table(["file", "MB"], [[name, f"{(PRETRAINED / name).stat().st_size / 1e6:.3f}"]
                                             for name in sorted(manifest["files"])])
    write_section("deployment-footprint", "\n".join(lines), "python benchmarks/deployment_footprint.py")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
