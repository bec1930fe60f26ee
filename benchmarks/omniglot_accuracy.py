"""Omniglot accuracy of Reptile, FOMAML and MAML: train on the background set's training alphabets,
evaluate 5-way 1-shot and 5-shot on its validation alphabets (never trained on), >= 1,000 tasks each.

    python benchmarks/omniglot_accuracy.py --algorithms reptile fomaml maml

Training runs go to runs/omniglot-<algorithm>/ and resume if interrupted; results are written to
docs/benchmarks.md. Runs are trained 5-way 5-shot; the same model is evaluated at 1 and 5 shots.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgeadapt.sdk import EvalResult, evaluate, load_checkpoint
from edgeadapt.sdk.checkpoint import load_training_state
from edgeadapt.cli import main as cli
from edgeadapt.sdk.recipes import make_sampler

from report import markdown_table, write_section

ITERATIONS = {"reptile": 2000, "fomaml": 3500, "maml": 3000}


def train(algorithm: str, iterations: int, out: Path, data: str | None) -> None:
    args = ["train", "--dataset", "omniglot", "--algorithm", algorithm, "--ways", "5", "--shots", "5",
            "--query-shots", "5", "--iterations", str(iterations), "--out", str(out),
            "--checkpoint-every", "100", "--eval-tasks", "0", "--no-progress"]
    if data:
        args += ["--data", data]
    checkpoint = out / "checkpoint"
    if checkpoint.exists():
        if load_training_state(checkpoint)[1]["iteration"] >= iterations:
            return
        args.append("--resume")
    if cli(args) != 0:
        sys.exit(f"training {algorithm} failed")


def evaluation(out: Path, tasks: int, data: str | None) -> tuple[int, dict, dict[int, EvalResult]]:
    """1- and 5-shot validation results of the run in ``out``, cached in eval.json for its current checkpoint."""
    model, config = load_checkpoint(out / "checkpoint")
    training = config["training"]
    iterations = load_training_state(out / "checkpoint")[1]["iteration"]
    cache = out / "eval.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved["iterations"] == iterations and saved["tasks"] == tasks:
            return iterations, training, {int(s): EvalResult("accuracy", np.array(v)) for s, v in saved["scores"].items()}
    results = {}
    for shots in (1, 5):
        sampler, _ = make_sampler("omniglot", Path(data) if data else None, "validation", 5, shots, 5, seed=1234,
                                  training=False)
        results[shots] = evaluate(model, sampler, training["inner_lr"], training["inner_steps"], tasks)
    cache.write_text(json.dumps({"iterations": iterations, "tasks": tasks,
                                 "scores": {s: r.scores.tolist() for s, r in results.items()}}))
    return iterations, training, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=list(ITERATIONS), choices=list(ITERATIONS))
    parser.add_argument("--iterations", type=int, default=None, help="override the per-algorithm iteration counts")
    parser.add_argument("--tasks", type=int, default=1000, help="evaluation tasks per setting")
    parser.add_argument("--data", default=None, help="Omniglot zip or data folder (default: $EDGEADAPT_DATA)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--eval-only", action="store_true", help="evaluate the checkpoints as they are")
    args = parser.parse_args()

    rows = []
    for algorithm in ITERATIONS:
        out = args.runs / f"omniglot-{algorithm}"
        if algorithm in args.algorithms and not args.eval_only:
            train(algorithm, args.iterations or ITERATIONS[algorithm], out, args.data)
        if (out / "checkpoint").exists():
            rows.append((algorithm, *evaluation(out, args.tasks, args.data)))
        if rows and rows[-1][0] == algorithm:
            print(algorithm, rows[-1][1], {s: str(r) for s, r in rows[-1][3].items()}, flush=True)

    lines = ["## Omniglot: 5-way accuracy on held-out background alphabets", "",
             "Trained 5-way 5-shot on the 24 training alphabets of the background set (x4 rotations), "
             "evaluated on the 6 validation alphabets (Bengali, Futurama, Hebrew, Korean, Tagalog, Tifinagh), "
             f"non-transductive, mean ± 95% CI over {args.tasks} tasks with 5 queries per class.", ""]
    lines += markdown_table(
        ["algorithm", "meta-iterations", "inner steps x lr", "outer lr", "1-shot", "5-shot"],
        [[algorithm, str(iterations), f"{training['inner_steps']} x {training['inner_lr']}", str(training["outer_lr"]),
          *(f"{100 * r.mean:.2f} ± {100 * r.ci95:.2f}" for r in (results[1], results[5]))]
         for algorithm, iterations, training, results in rows])
    write_section("omniglot-accuracy", "\n".join(lines), "python benchmarks/omniglot_accuracy.py")


if __name__ == "__main__":
    main()
