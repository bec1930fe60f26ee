"""Adaptation scope as a measured choice: accuracy and adapt latency for head only, last block + head, whole network.

    python benchmarks/adaptation_scopes.py [--tasks 1000] [--run runs/omniglot-conv4-train]

The validation twin (``bash models/reproduce_omniglot_conv4.sh train``) is exported once per scope into
``--out`` (ONNX only), with the shipped model's other settings (prototype head, its inner steps and learning
rate, up to 20 ways x 10 shots). Accuracy: through ``edgeadapt.runtime`` (onnxruntime) on the tasks
``benchmarks/runtime_accuracy.py`` draws from the 6 validation alphabets, non-transductive, mean ± 95% CI
(cached per cell in ``--out``). Latency: one ``adapt`` call on one thread, the scopes interleaved round by
round on the same support set, so that machine load affects all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
import torch

import edgeadapt.runtime as rt
from deployment import ROOT, TASKS, tasks
from deployment_latency import time_rounds
from edgeadapt.export import export_artifact
from edgeadapt.runtime.format.files import sha256_file
from report import markdown_table, write_section
from runtime_accuracy import RUN, mean_ci

SCOPES = {"head": "head only", "last_block": "last block + head", "all": "whole network"}


def scope_artifact(run: Path, out: Path, scope: str) -> Path:
    """The validation twin exported with ``scope`` (ONNX only), exported on first use."""
    path = out / scope
    if not (path / "manifest.json").exists():
        export_artifact(run / "checkpoint", path, executorch=False, scope=scope, max_ways=20, max_shots=10,
                        overwrite=True)
    return path


def accuracy(learner: rt.Learner, ways: int, shots: int, count: int) -> tuple[float, float]:
    """Mean accuracy % and its 95% CI over ``count`` validation tasks, through the runtime."""
    scores = [float((learner.adapt(sx, sy.tolist()).predict_proba(qx).argmax(1) == qy).mean())
              for sx, sy, qx, qy in tasks(ways, shots, count, seed=4)]
    return mean_ci(scores)


def latencies(learners: dict[str, rt.Learner], repeats: int) -> dict[str, dict[str, float]]:
    """Median adapt milliseconds per scope and task, the scopes interleaved."""
    result: dict[str, dict[str, float]] = {scope: {} for scope in learners}
    for ways, shots in TASKS:
        support_x, support_y, _, _ = next(tasks(ways, shots, 1, seed=2))
        labels = support_y.tolist()
        times = time_rounds({s: (lambda learner=learner: learner.adapt(support_x, labels))
                             for s, learner in learners.items()}, repeats)
        for scope, values in times.items():
            result[scope][f"{ways}-{shots}"] = 1e3 * statistics.median(values)
        print(ways, shots, {s: round(v[f"{ways}-{shots}"], 2) for s, v in result.items()}, flush=True)
    return result


def write_report(args: argparse.Namespace, learners: dict[str, rt.Learner], scores: dict, times: dict,
                 load: tuple[float, float, float]) -> None:
    """The docs/benchmarks.md section: one row per scope, accuracy cells then latency cells."""
    cells = [f"{ways}-way {shots}-shot" for ways, shots in TASKS]
    header = ["scope", "adapted parameters", *[f"{c} accuracy %" for c in cells],
              *[f"{c} adapt ms" for c in cells], "20-way 5-shot adapt vs head only"]
    rows = []
    for scope, learner in learners.items():
        parameters = sum(int(np.prod(p["shape"])) for p in learner.manifest["adapted_parameters"])
        accuracy_cells = [f"{m:.2f} ± {c:.2f}" if (m, c) != (None, None) else "not run"
                          for m, c in (scores.get(f"{scope}-{w}-{s}-{args.tasks}", (None, None)) for w, s in TASKS)]
        latency_cells = [f"{times[scope][f'{w}-{s}']:.1f}" for w, s in TASKS]
        rows.append([SCOPES[scope], f"{parameters:,}", *accuracy_cells, *latency_cells,
                     f"{times[scope]['20-5'] / times['head']['20-5']:.1f}x" if "head" in times else "-"])
    run = args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run
    model = json.loads((args.run / "checkpoint" / "config.json").read_text())["model"]["config"]
    inner = next(iter(learners.values())).manifest
    lines = ["## Adaptation scope: accuracy and latency (validation alphabets)", "",
             f"`{run}` (a validation twin; {model.get('norm', 'group')} norm) exported once per scope with the "
             f"checkpoint's inner loop (prototype head of scale {inner['head_scale']}, {inner['inner_steps']} SGD "
             f"steps at lr {inner['inner_lr']} on the whole support set), up to 20 ways x 10 shots. Accuracy "
             f"through `edgeadapt.runtime` (onnxruntime), {args.tasks} tasks "
             "per cell (the tasks of the runtime-accuracy section), 5 queries per class, non-transductive, "
             "mean ± 95% CI. Latency: median of one `adapt` call (onnxruntime, one thread) over "
             f"{args.repeats} rounds, the scopes interleaved on the same support set, so the ratios compare like "
             f"with like; load average during the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             "(1 / 5 / 15 min, this benchmark's own process included) on 2 cores.", "",
             *markdown_table(header, rows)]
    command = f"python benchmarks/adaptation_scopes.py --tasks {args.tasks} --repeats {args.repeats} --run {run}"
    write_section("adaptation-scopes", "\n".join(lines),
                  command + (f" --all-cells {' '.join(args.all_cells)}" if args.all_cells else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per accuracy cell")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per task size")
    parser.add_argument("--run", type=Path, default=RUN, help="training run folder holding checkpoint/")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "adaptation-scopes",
                        help="scratch folder for the per-scope artifacts and the cached accuracies (a subfolder "
                             "per checkpoint)")
    parser.add_argument("--all-cells", nargs="+", default=None, metavar="WAYSxSHOTS",
                        help="accuracy cells for the whole-network scope (default: all four; e.g. 5x1 20x1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # artifacts and cached accuracies belong to one checkpoint: a retrained run gets a folder of its own
    out = args.out / sha256_file(args.run / "checkpoint" / "manifest.json")[:12]
    out.mkdir(parents=True, exist_ok=True)
    learners = {scope: rt.load(scope_artifact(args.run, out, scope), threads=1) for scope in SCOPES}
    times = latencies(learners, args.repeats)
    load = os.getloadavg()
    cache = out / "accuracy.json"
    scores = json.loads(cache.read_text()) if cache.exists() else {}
    write_report(args, learners, scores, times, load)
    whole = {tuple(int(v) for v in c.split("x")) for c in args.all_cells} if args.all_cells else set(TASKS)
    for scope, learner in learners.items():
        for ways, shots in TASKS:
            key = f"{scope}-{ways}-{shots}-{args.tasks}"
            if key in scores or (scope == "all" and (ways, shots) not in whole):
                continue
            scores[key] = accuracy(learner, ways, shots, args.tasks)
            print(key, scores[key], flush=True)
            cache.write_text(json.dumps(scores, indent=1))
            write_report(args, learners, scores, times, load)


if __name__ == "__main__":
    main()
