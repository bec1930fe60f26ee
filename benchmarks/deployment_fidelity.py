"""Fidelity: the device's adaptation against edgeadapt.sdk's PyTorch adaptation on the same tasks.

    python benchmarks/deployment_fidelity.py [--tasks 100]

For each scope, task size and backend: the largest absolute difference of query probabilities and
whether every query gets the same argmax. Goal: at most 1e-4 and identical argmax. The same
adaptation in float64 is the exact answer each float32 result is also compared with: on some tasks
the inner loop (5 steps at learning rate 0.1) amplifies rounding so much that PyTorch's own float32
result is further than 1e-4 from it.
"""

from __future__ import annotations

import numpy as np

import edgeadapt.runtime as rt
from deployment import (TASKS, artifact, float64_twin, parse_deployment_arguments, pytorch_probabilities, reference,
                        tasks)
from report import markdown_table, write_section

TOLERANCE = 1e-4


def measure(count: int, backends: list[str], scopes: list[str]) -> list[dict]:
    rows = []
    for scope in scopes:
        path = artifact(scope)
        inner = reference(path)
        exact = float64_twin(inner)
        learners = {b: rt.load(path, backend=b, threads=1) for b in backends}
        for ways, shots in TASKS:
            worst = {b: 0.0 for b in backends}
            worst_exact = {b: 0.0 for b in backends}
            agree = {b: 0 for b in backends}
            torch_error = 0.0
            for support_x, support_y, query_x, _ in tasks(ways, shots, count, seed=1):
                expected = pytorch_probabilities(inner, support_x, support_y, query_x)
                truth = pytorch_probabilities(exact, support_x.astype(np.float64), support_y,
                                              query_x.astype(np.float64))
                torch_error = max(torch_error, float(np.abs(expected - truth).max()))
                for b, learner in learners.items():
                    got = learner.adapt(support_x, support_y.tolist()).predict_proba(query_x)
                    worst[b] = max(worst[b], float(np.abs(got - expected).max()))
                    worst_exact[b] = max(worst_exact[b], float(np.abs(got - truth).max()))
                    agree[b] += int((got.argmax(1) == expected.argmax(1)).all())
            for b in backends:
                rows.append({"scope": scope, "task": f"{ways}-way {shots}-shot", "backend": b, "tasks": count,
                             "max_diff": worst[b], "max_diff_exact": worst_exact[b], "torch_error": torch_error,
                             "argmax_same": agree[b]})
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    args = parse_deployment_arguments(__doc__, "--tasks", 100, "tasks per scope and task size")
    rows = measure(args.tasks, args.backends, args.scopes)
    lines = ["## Deployment fidelity: runtime vs PyTorch", "",
             "Query probabilities after adapting on the same support set, validation alphabets, pretrained "
             "`models/omniglot-conv4` (prototype head; head scope as shipped, all = the same weights adapting the "
             "whole network). "
             f"Goal: max |difference| <= {TOLERANCE:g} and identical argmax on every task.", "",
             "Columns: the largest difference from PyTorch float32 (the goal), from the exact (float64) "
             "adaptation, and PyTorch float32's own largest difference from the exact adaptation.", ""]
    lines += markdown_table(
        ["scope", "task", "backend", "tasks", "max diff. vs PyTorch", "max diff. vs exact", "PyTorch vs exact",
         "tasks with identical argmax", "goal met"],
        [[r["scope"], r["task"], r["backend"], str(r["tasks"]), f"{r['max_diff']:.1e}", f"{r['max_diff_exact']:.1e}",
          f"{r['torch_error']:.1e}", f"{r['argmax_same']}/{r['tasks']}",
          "yes" if r["max_diff"] <= TOLERANCE and r["argmax_same"] == r["tasks"] else "no"] for r in rows])
    write_section("deployment-fidelity", "\n".join(lines), f"python benchmarks/deployment_fidelity.py --tasks "
                  f"{args.tasks} --scopes {' '.join(args.scopes)} --backends {' '.join(args.backends)}")


if __name__ == "__main__":
    main()
