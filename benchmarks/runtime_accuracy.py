"""Accuracy through the runtime against the same evaluation in PyTorch, on the validation alphabets.

    python benchmarks/runtime_accuracy.py [--tasks 600]

The model is the shipped recipe trained on the background *training* alphabets only (the validation twin,
``runs/omniglot-conv4-train`` from ``bash models/reproduce_omniglot_conv4.sh train``), exported as the shipped
model is (head-only adaptation), and adapted on the same tasks by ``edgeadapt.runtime`` (onnxruntime) and by
``edgeadapt.sdk``. Rows: 5/20-way 1/5-shot over all validation alphabets, and 20-way 1-shot within one alphabet
(Lake et al.'s protocol). Goals: the two within 0.5 points; 97.5 / 99.3 / 92 / 98 on the four standard rows.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

import edgeadapt.runtime as rt
from deployment import ROOT, TASKS, pytorch_probabilities, reference, tasks
from edgeadapt.export import export_artifact
from report import markdown_table, write_section

RUN = ROOT / "runs" / "omniglot-conv4-train"


def mean_ci(scores: list[float]) -> tuple[float, float]:
    a = np.asarray(scores)
    return 100 * a.mean(), 100 * 1.96 * a.std(ddof=1) / math.sqrt(len(a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per row")
    parser.add_argument("--run", type=Path, default=RUN, help="training run folder holding checkpoint/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    artifact = args.run / "artifact"
    if not (artifact / "manifest.json").exists():
        export_artifact(args.run / "checkpoint", artifact, executorch=False, scope="head", max_ways=20,
                        max_shots=10)
    inner = reference(artifact, args.run / "checkpoint")
    run = args.run.resolve()
    learner = rt.load(artifact, threads=1)
    lines = ["## Accuracy through the runtime (validation alphabets)", "",
             f"`{run.relative_to(ROOT) if run.is_relative_to(ROOT) else run}`: the shipped "
             "recipe trained on the 24 training alphabets (the validation twin), exported head-only as the shipped "
             f"model is, adapted on the same {args.tasks} tasks per row (5 queries per class, non-transductive) "
             "by PyTorch and by `edgeadapt.runtime` (onnxruntime), on the 6 validation alphabets. Mean accuracy "
             "% ± 95% CI. Goals: within 0.5 points of each other; 97.5 / 99.3 / 92 / 98 on the four standard rows.",
             ""]
    table = []
    rows = [(ways, shots, False) for ways, shots in TASKS] + [(20, 1, True)]
    for ways, shots, within in rows:
        torch_scores, runtime_scores, changed = [], [], 0
        for support_x, support_y, query_x, query_y in tasks(ways, shots, args.tasks, seed=4, within_alphabet=within):
            expected = pytorch_probabilities(inner, support_x, support_y, query_x).argmax(1)
            got = learner.adapt(support_x, support_y.tolist()).predict_proba(query_x).argmax(1)
            torch_scores.append(float((expected == query_y).mean()))
            runtime_scores.append(float((got == query_y).mean()))
            changed += int((got != expected).any())
        (tm, tc), (rm, rc) = mean_ci(torch_scores), mean_ci(runtime_scores)
        name = f"{ways}-way {shots}-shot" + (", within one alphabet" if within else "")
        table.append([name, f"{tm:.2f} ± {tc:.2f}", f"{rm:.2f} ± {rc:.2f}", f"{rm - tm:+.2f}",
                      f"{changed}/{args.tasks}"])
        print(table[-1], flush=True)
    lines += markdown_table(["task", "PyTorch", "runtime", "difference (points)", "tasks with a different prediction"],
                            table)
    write_section("runtime-accuracy", "\n".join(lines), "python benchmarks/runtime_accuracy.py")


if __name__ == "__main__":
    main()
