"""Fidelity of the Node.js runner (examples/node, onnxruntime-node) against edgeadapt.runtime on real tasks.

    python benchmarks/js_targets_fidelity.py [--tasks 20] [--node "node"] [--label "x86-64, native"]

Each task (validation alphabets, pretrained models/omniglot-conv4) is adapted and predicted by one run of the
runner and by the Python runtime; the section records the largest absolute difference of query probabilities and
whether every query gets the same argmax. Goal: at most 1e-4 and identical argmax. examples/node/check_arm.sh runs
it with an arm64 Node.js under qemu-aarch64, where timings mean nothing (emulation), so none are reported.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import edgeadapt.runtime as rt
from deployment import PRETRAINED, ROOT, tasks
from report import markdown_table, write_section

TOLERANCE = 1e-4
TASK_SIZES = ((5, 1), (5, 5))


def run_task(node: list[str], folder: Path, support_x, support_y, query_x) -> dict:
    """One run of the Node.js runner on one task; its JSON result."""
    np.save(folder / "support_x.npy", support_x)
    np.save(folder / "query_x.npy", query_x)
    (folder / "support_y.json").write_text(json.dumps(support_y.tolist()))
    done = subprocess.run([*node, "run.mjs", str(PRETRAINED), "--support-x", str(folder / "support_x.npy"),
                           "--support-y", str(folder / "support_y.json"), "--query-x", str(folder / "query_x.npy")],
                          cwd=ROOT / "examples" / "node", capture_output=True, text=True, timeout=900, check=True)
    return json.loads(done.stdout)


def measure(node: list[str], count: int) -> list[dict]:
    learner = rt.load(PRETRAINED, threads=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ways, shots in TASK_SIZES:
            worst, agree, arch, engine = 0.0, 0, "", ""
            for support_x, support_y, query_x, _ in tasks(ways, shots, count, seed=3):
                result = run_task(node, Path(tmp), support_x, support_y, query_x)
                expected = learner.adapt(support_x, support_y.tolist())
                assert result["classes"] == list(expected.classes), (result["classes"], expected.classes)
                got = np.array(result["probabilities"])
                want = expected.predict_proba(query_x)
                worst = max(worst, float(np.abs(got - want).max()))
                agree += int((got.argmax(1) == want.argmax(1)).all())
                arch, engine = result["arch"], result["engine"]
            rows.append({"task": f"{ways}-way {shots}-shot", "tasks": count, "max_diff": worst, "argmax_same": agree,
                         "arch": arch, "engine": engine})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="tasks per task size")
    parser.add_argument("--node", default="node", help="the command that runs Node.js (default: %(default)s)")
    parser.add_argument("--label", default="x86-64, native", help="how the target is named in the table")
    args = parser.parse_args()
    rows = measure(shlex.split(args.node), args.tasks)
    table = [[r["arch"], r["engine"], r["task"], str(r["tasks"]), f"{r['max_diff']:.1e}",
              f"{r['argmax_same']}/{r['tasks']}",
              "yes" if r["max_diff"] <= TOLERANCE and r["argmax_same"] == r["tasks"] else "no"] for r in rows]
    lines = [f"## Node.js runner (onnxruntime-node) vs the Python runtime: {args.label}", "",
             "Query probabilities after adapting on the same support set (validation alphabets, pretrained "
             f"`models/omniglot-conv4`), `examples/node/run.mjs` against `edgeadapt.runtime`. Goal: max |difference| "
             f"<= {TOLERANCE:g} and identical argmax on every task. Under qemu-aarch64 user-mode emulation "
             "(`examples/node/check_arm.sh`) this is a check of correctness only: no timings.", "",
             *markdown_table(["arch", "engine", "task", "tasks", "max diff. vs Python runtime",
                              "tasks with identical argmax", "goal met"], table)]
    slug = re.sub(r"[^a-z0-9]+", "-", args.label.lower()).strip("-")
    command = f"python benchmarks/js_targets_fidelity.py --tasks {args.tasks} --label {shlex.quote(args.label)}"
    write_section(f"js-targets-fidelity-{slug}", "\n".join(lines),
                  command if args.node == "node" else f"ARM_TASKS={args.tasks} bash examples/node/check_arm.sh")

if __name__ == "__main__":
    main()
