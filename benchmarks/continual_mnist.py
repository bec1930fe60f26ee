"""Rotated MNIST (0, 90, 180, 270 degrees, one task each), learned in sequence by SGD, SGD + EWC, Reptile (K=5)
and Reptile + EWC with the same MLP and the same small CNN (3 seeds each): the accuracy matrix, final average
accuracy, forgetting, the few-shot view, and the published table beside ours.

    python benchmarks/continual_mnist.py            # full: writes docs/benchmarks.md and docs/images/continual_mnist.png
    python benchmarks/continual_mnist.py --quick    # reduced (MLP, 1 seed, fewer steps); prints only
    python benchmarks/continual_mnist.py --search 12  # Optuna on a validation slice of the training set

The last line printed is JSON: {"methods": {NAME: {"matrix": [[...]], "average": A, "forgetting": F}}}
(NAME is the method for the MLP, "cnn/<method>" for the CNN; values are means over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgeadapt.sdk.continual import (
    METHODS,
    ContinualConfig,
    ContinualRun,
    ControllerConfig,
    average_accuracy,
    continual_model,
    few_shot_accuracy,
    forgetting,
    rotated_mnist,
)
from edgeadapt.sdk.continual.recipes import CNN_INNER_LR, HYPERPARAMETERS, STREAMS, hyperparameters
from edgeadapt.runtime.format.files import atomic_write

from report import REPORT, markdown_table, write_section

# Accuracy on the first task (unrotated MNIST) after training through tasks 1, 2, 3, 4, as the seeds publish it.
PUBLISHED = {"sgd": (98.2, 81.3, 49.2, 21.1), "sgd-ewc": (97.8, 91.2, 76.3, 62.1),
             "reptile": (97.5, 93.1, 88.7, 84.2), "reptile-ewc": (97.1, 94.3, 90.1, 86.8)}
# Per architecture: network width, training images per task, test images scored per task, steps, batch.
# Seeds: 3 for the MLP and the CNN, 1 in quick mode.
SEEDS = {"full": {"mlp": 3, "cnn": 3}, "quick": {"mlp": 1}}
# One JSON per finished run, reused when its settings match.
RUNS = Path(__file__).resolve().parent.parent / "runs" / "continual-mnist"
SETTINGS = {
    "full": {arch: dataclasses.asdict(stream) for arch, stream in STREAMS.items()},  # the CLI's defaults too
    "quick": {"mlp": {"hidden": 100, "train_size": 5000, "eval_size": 2000, "steps": 300, "batch": 32}},
}
FEW_SHOT = 5
IMAGE = Path(__file__).resolve().parent.parent / "docs" / "images" / "continual_mnist.png"


def config_for(method: str, setting: dict, hyper: dict) -> ContinualConfig:
    """The run configuration of ``method`` under ``setting`` with hyperparameters ``hyper``."""
    base = ContinualConfig.of(method, steps_per_task=setting["steps"], batch_size=setting["batch"],
                           controller=ControllerConfig(), eval_every=max(setting["steps"] // 4, 1))
    return base.replace(**hyper)


def cached_run(method: str, arch: str, setting: dict, hyper: dict, seed: int, data: str | None,
               cached_only: bool = False) -> dict | None:
    """:func:`run_one`, or its saved result when a run with the same settings has finished before
    (``cached_only``: None instead of running)."""
    key = {"method": method, "arch": arch, "setting": setting, "hyper": hyper, "seed": seed}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = RUNS / f"{arch}-{method}-seed{seed}-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    if cached_only:
        return None
    result = run_one(method, arch, setting, hyper, seed, data)
    atomic_write(path, json.dumps({"key": key, "result": result}).encode())
    return result


def run_one(method: str, arch: str, setting: dict, hyper: dict, seed: int, data: str | None) -> dict:
    """One method, one architecture, one seed: matrix, curve, few-shot accuracies and seconds taken."""
    tasks = rotated_mnist(data, train_size=setting["train_size"], eval_size=setting["eval_size"],
                          flatten=arch == "mlp", seed=seed)
    torch.manual_seed(seed)
    model = continual_model(arch, setting["hidden"])[0]
    start = time.perf_counter()
    run = ContinualRun(model, tasks, config_for(method, setting, hyper), seed)
    matrix = run.train(progress=False)
    few = [few_shot_accuracy(run.model, t, FEW_SHOT, 5, hyper["inner_lr"], seed) for t in tasks]
    return {"matrix": matrix, "curve": run.curve, "few_shot": few, "seconds": time.perf_counter() - start}


def search(trials: int, data: str | None, setting: dict) -> dict[str, dict]:
    """Optuna per method (MLP, seed 0), scored on the final average accuracy on a validation slice."""
    from edgeadapt.sdk.continual.search import search_hyperparameters

    tasks = rotated_mnist(data, train_size=setting["train_size"], eval_size=setting["eval_size"],
                          evaluate_on="validation", flatten=True, seed=0)
    found = {}
    for method in METHODS:
        result = search_hyperparameters(tasks, lambda: continual_model("mlp", setting["hidden"])[0],
                                        config_for(method, setting, HYPERPARAMETERS[method]), trials, seed=0)
        found[method] = result
        print(method, result["best"], f"{result['best_validation_average']:.3f}", flush=True)
    return found


def write_search_section(found: dict[str, tuple[dict, float, int]], trials: int) -> None:
    """The search's own section of docs/benchmarks.md: per method (best values, validation average, trials)."""
    names = {"inner_lr": "alpha_f", "meta_lr": "alpha_m", "inner_steps": "K", "ewc_lambda": "lambda"}
    rows = [[m, ", ".join(f"{names[k]} {v:.3g}" for k, v in best.items()), f"{100 * score:.1f}", str(n)]
            for m, (best, score, n) in found.items()]
    quick = SETTINGS["quick"]["mlp"]
    body = ["## Rotated MNIST: hyperparameter search (Optuna TPE)", "",
            "Scored on retention: final average accuracy over the four tasks on the last 5,000 training images "
            "(never trained on; the test set is not looked at). MLP, seed 0, the quick stream "
            f"({quick['steps']} steps of batch {quick['batch']} per task on {quick['train_size']} images per task). "
            "Searched: alpha_f in [0.005, 0.3] (log); for Reptile alpha_m in [0.05, 1] and K in {1, 2, 5, 10}; "
            "for EWC lambda in [1, 1000] (log).", "",
            *markdown_table(["method", "best values", "validation final average (%)", "trials"], rows)]
    write_section("continual-mnist-search", "\n".join(body), f"python benchmarks/continual_mnist.py --search {trials}")


def pct(values: list[float]) -> str:
    """Mean (and standard deviation over seeds, when there are several) in percent."""
    a = 100 * np.asarray(values)
    return f"{a.mean():.1f}" if len(a) == 1 else f"{a.mean():.1f} ± {a.std(ddof=1):.1f}"


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean matrix, average and forgetting per method over its seeds."""
    out = {}
    for method, runs in results.items():
        matrix = np.mean([r["matrix"] for r in runs], axis=0)
        out[method] = {"matrix": np.round(matrix, 4).tolist(),
                       "average": round(float(np.mean([average_accuracy(r["matrix"]) for r in runs])), 4),
                       "forgetting": round(float(np.mean([forgetting(r["matrix"]) for r in runs])), 4)}
    return out


def tables(arch: str, setting: dict, results: dict[str, list[dict]]) -> list[str]:
    """The Markdown for one architecture: ours beside the published table, then the few-shot view and matrices."""
    seeds = len(next(iter(results.values())))
    lines = [f"### {arch.upper()} ({'784-100-100-10' if arch == 'mlp' else 'Conv4, 32 filters'}), "
             f"{seeds} seed{'s' if seeds > 1 else ''}", "",
             f"{setting['steps']} SGD steps of batch {setting['batch']} per task on {setting['train_size']} training "
             f"images per task, scored on {setting['eval_size']} test images per task. Accuracy (%) on task 1 "
             "(unrotated MNIST) after training through tasks 1, 2, 3, 4: ours (mean ± sd over seeds) / published. "
             "Seconds per run are wall time on a shared 2-core machine, not a speed measurement.", ""]
    rows = []
    for method, runs in results.items():
        first = [pct([r["matrix"][i][0] for r in runs]) for i in range(4)]
        published = " / ".join(f"{v:.1f}" for v in PUBLISHED[method])
        rows.append([method, *first, published, pct([average_accuracy(r["matrix"]) for r in runs]),
                     pct([forgetting(r["matrix"]) for r in runs]),
                     f"{np.mean([r['seconds'] for r in runs]):.0f}"])
    lines += markdown_table(["method", "after 1", "after 2", "after 3", "after 4", "published", "final average",
                             "forgetting", "s / run"], rows)
    lines += ["", f"Few-shot view: accuracy (%) on each task after {FEW_SHOT} examples per class of it and K = 5 "
                  "full-batch SGD steps (alpha_f) from the final weights (the last task is the one just learned).", ""]
    lines += markdown_table(["method", "rot0", "rot90", "rot180", "rot270"],
                            [[m, *[pct([r["few_shot"][j] for r in runs]) for j in range(4)]] for m, runs in results.items()])
    lines += ["", "Accuracy matrices (%, mean over seeds; row i: after training through task i, column j: task j):", ""]
    for method, runs in results.items():
        matrix = 100 * np.mean([r["matrix"] for r in runs], axis=0)
        lines += [f"- {method}: " + "; ".join(" ".join(f"{v:.1f}" for v in row) for row in matrix)]
    return lines + [""]


def plot(all_results: dict[str, dict[str, list[dict]]], settings: dict) -> None:
    """Accuracy on each task as training proceeds, one panel per architecture and method (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(all_results)
    fig, axes = plt.subplots(len(archs), len(METHODS), figsize=(4 * len(METHODS), 3 * len(archs)), squeeze=False,
                             sharey=True)
    for row, arch in enumerate(archs):
        steps = settings[arch]["steps"]
        for col, method in enumerate(METHODS):
            ax = axes[row][col]
            runs = all_results[arch][method]
            x = [p["task"] * steps + p["step"] for p in runs[0]["curve"]]
            curves = 100 * np.mean([[p["accuracies"] for p in r["curve"]] for r in runs], axis=0)
            for task in range(curves.shape[1]):
                ax.plot(x, curves[:, task], marker=".", label=f"task {task + 1} ({90 * task}°)")
            for boundary in range(1, 4):
                ax.axvline(boundary * steps, color="grey", lw=0.5)
            ax.set_title(f"{arch.upper()} {method}")
            ax.set_xlabel("gradient steps")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    IMAGE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMAGE, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="MLP only, 1 seed, fewer steps; writes no docs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method (default: 3, quick 1)")
    parser.add_argument("--archs", nargs="+", choices=("mlp", "cnn"), default=None)
    parser.add_argument("--search", type=int, default=0, metavar="TRIALS",
                        help="instead: Optuna search per method (MLP, quick-sized stream) on a validation slice")
    parser.add_argument("--data", default=None, help="data folder holding mnist/ (default: $EDGEADAPT_DATA)")
    parser.add_argument("--cached-only", action="store_true",
                        help="report only the seeds whose runs have all finished (in runs/continual-mnist/)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1; the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.search:
        found = search(args.search, args.data, SETTINGS["quick"]["mlp"])
        write_search_section({m: (r["best"], r["best_validation_average"], len(r["trials"])) for m, r in found.items()},
                             args.search)
        print(json.dumps({"search": {m: r["best"] for m, r in found.items()}}))
        return

    mode = "quick" if args.quick else "full"
    archs = args.archs or list(SETTINGS[mode])
    settings = {arch: SETTINGS[mode].get(arch, SETTINGS["full"][arch]) for arch in archs}
    all_results: dict[str, dict[str, list[dict]]] = {}
    for arch in archs:
        all_results[arch] = {m: [] for m in METHODS}
        for seed in range(args.seeds or SEEDS[mode].get(arch, 1)):
            results = {m: cached_run(m, arch, settings[arch], hyperparameters(m, arch), seed, args.data,
                                     args.cached_only) for m in METHODS}
            if None in results.values():  # a seed is reported only when every method has finished it
                continue
            for method, result in results.items():
                all_results[arch][method].append(result)
                print(f"{arch} {method} seed {seed}: final average {100 * average_accuracy(result['matrix']):.1f}%, "
                      f"forgetting {100 * forgetting(result['matrix']):.1f}, {result['seconds']:.0f} s", flush=True)

    all_results = {arch: r for arch, r in all_results.items() if r[next(iter(METHODS))]}
    archs = list(all_results)
    if not args.quick and archs:
        hyper = "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in h.items()) for m, h in HYPERPARAMETERS.items())
        body = ["## Continual learning: rotated MNIST", "",
                "Four tasks in sequence: MNIST, then rotated by 90, 180 and 270 degrees; one network trained through "
                "them, never revisiting a task. Every method takes the same number of gradient steps per task "
                "(Reptile: 1 outer update per K = 5 inner steps). Forgetting = mean over tasks 1-3 of "
                "(accuracy right after learning it - accuracy at the end), i.e. minus the backward transfer. "
                f"Hyperparameters (MLP; the best of the search below, rounded, with K = 5 for Reptile as published): "
                f"{hyper}; the CNN takes the same with alpha_f = {CNN_INNER_LR} (not searched). Plain SGD inner loop, "
                "true Fisher on 500 training images of each task.",
                "", f"![accuracy on each task as training proceeds]({IMAGE.relative_to(REPORT.parent).as_posix()})", ""]
        missing = [f"{arch} {len(all_results[arch][next(iter(METHODS))])} of {SEEDS['full'][arch]}" for arch in archs
                   if len(all_results[arch][next(iter(METHODS))]) < SEEDS["full"][arch]]
        if missing or len(archs) < len(SETTINGS["full"]):
            body += [f"Partial: seeds reported {', '.join(missing) or 'all'}; architectures {', '.join(archs)}. "
                     "Rerunning the command below finishes the rest (finished runs are reused).", ""]
        for arch in archs:
            body += tables(arch, settings[arch], all_results[arch])
        plot(all_results, settings)
        write_section("continual-mnist", "\n".join(body), "python benchmarks/continual_mnist.py")

    methods = {}
    for arch in archs:
        for method, summary in summarise(all_results[arch]).items():
            methods[method if arch == "mlp" else f"{arch}/{method}"] = summary
    print(json.dumps({"methods": methods}))


if __name__ == "__main__":
    main()
