"""Fidelity: the device's adaptation against edgeadapt.sdk's PyTorch adaptation on the same tasks.

    python benchmarks/deployment_fidelity.py [--tasks 100]

For each scope, task size and backend: the largest absolute difference of query probabilities and
whether every query gets the same argmax. Goal: at most 1e-4 and identical argmax.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import edgeadapt.runtime as rt
from deployment import TASKS, artifact, pytorch_probabilities, reference, tasks
from report import write_section

TOLERANCE = 1e-4


def measure(count: int, backends: list[str]) -> list[dict]:
    rows = []
    for scope in ("all", "head"):
        path = artifact(scope)
        inner = reference(path)
        learners = {b: rt.load(path, backend=b, threads=1) for b in backends}
        for ways, shots in TASKS:
            worst = {b: 0.0 for b in backends}
            agree = {b: 0 for b in backends}
            for support_x, support_y, query_x, _ in tasks(ways, shots, count, seed=1):
                expected = pytorch_probabilities(inner, support_x, support_y, query_x)
                for b, learner in learners.items():
                    got = learner.adapt(support_x, support_y.tolist()).predict_proba(query_x)
                    worst[b] = max(worst[b], float(np.abs(got - expected).max()))
                    agree[b] += int((got.argmax(1) == expected.argmax(1)).all())
            for b in backends:
                rows.append({"scope": scope, "task": f"{ways}-way {shots}-shot", "backend": b, "tasks": count,
                             "max_diff": worst[b], "argmax_same": agree[b]})
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks per scope and task size")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "executorch"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.tasks, args.backends)
    lines = ["## Deployment fidelity: runtime vs PyTorch", "",
             "Query probabilities after adapting on the same support set, validation alphabets, pretrained "
             "`models/omniglot-conv4` (head scope: the same weights exported head-only). "
             f"Goal: max |difference| <= {TOLERANCE:g} and identical argmax on every task.", "",
             "| scope | task | backend | tasks | max abs. difference | tasks with identical argmax | goal met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        met = r["max_diff"] <= TOLERANCE and r["argmax_same"] == r["tasks"]
        lines.append(f"| {r['scope']} | {r['task']} | {r['backend']} | {r['tasks']} | {r['max_diff']:.1e} | "
                     f"{r['argmax_same']}/{r['tasks']} | {'yes' if met else 'no'} |")
    write_section("deployment-fidelity", "\n".join(lines), "python benchmarks/deployment_fidelity.py")


if __name__ == "__main__":
    main()
