"""Time per meta-iteration and peak memory of Reptile, FOMAML and MAML on the same Omniglot tasks.

    python benchmarks/meta_iteration_cost.py

Each algorithm runs in a fresh subprocess (same seed, so the same tasks and initial weights):
a few warm-up iterations, then the peak-RSS counter is reset and ``--iterations`` meta-iterations
are timed. Memory is the peak resident memory above what the process held before those
iterations (data, model and warm-up excluded), i.e. the working memory of a meta-step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from edgeadapt.sdk import Conv4, MetaConfig, MetaTrainer
from edgeadapt.sdk.recipes import make_sampler, recipe_defaults

from report import markdown_table, write_section

ALGORITHMS = ("reptile", "fomaml", "maml")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(algorithm: str, iterations: int, shots: int, meta_batch: int) -> dict:
    """Seconds per meta-iteration and peak extra resident memory (MiB) of one algorithm, in this process."""
    sampler, _ = make_sampler("omniglot", None, "train", 5, shots, 5, seed=0, training=True)
    torch.manual_seed(0)
    defaults = recipe_defaults("omniglot", algorithm)
    config = MetaConfig(algorithm, inner_lr=defaults["inner_lr"], outer_lr=defaults["outer_lr"],
                        inner_steps=defaults["inner_steps"], meta_batch_size=meta_batch, num_iterations=iterations)
    trainer = MetaTrainer(Conv4(ways=5), sampler, config)
    for _ in range(3):
        trainer.step()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.step()
    seconds = (time.perf_counter() - start) / iterations
    return {"algorithm": algorithm, "seconds": seconds, "peak_extra_mib": (_rss_kib("VmHWM") - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--meta-batch", type=int, default=5)
    parser.add_argument("--child", choices=ALGORITHMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.iterations, args.shots, args.meta_batch)))
        return

    rows = {}
    for algorithm in ALGORITHMS:
        out = subprocess.run([sys.executable, __file__, "--child", algorithm, "--iterations", str(args.iterations),
                              "--shots", str(args.shots), "--meta-batch", str(args.meta_batch)],
                             check=True, capture_output=True, text=True).stdout
        rows[algorithm] = json.loads(out.strip().splitlines()[-1])
        print(rows[algorithm], flush=True)
    maml = rows["maml"]
    lines = ["## Cost of a meta-iteration: Reptile vs FOMAML vs MAML", "",
             f"Conv4 (113k parameters), Omniglot 5-way {args.shots}-shot, 5 queries per class, meta-batch "
             f"{args.meta_batch}, 5 inner SGD steps, CPU; {args.iterations} timed iterations after 3 warm-up ones. "
             "Memory: peak resident memory of the process above its level before the timed iterations.", ""]
    lines += markdown_table(
        ["algorithm", "s / meta-iteration", "time vs MAML", "peak working memory (MiB)", "memory vs MAML"],
        [[a, f"{rows[a]['seconds']:.3f}", f"{rows[a]['seconds'] / maml['seconds']:.2f}x",
          f"{rows[a]['peak_extra_mib']:.1f}", f"{rows[a]['peak_extra_mib'] / maml['peak_extra_mib']:.2f}x"]
         for a in ALGORITHMS])
    write_section("meta-iteration-cost", "\n".join(lines), "python benchmarks/meta_iteration_cost.py")


if __name__ == "__main__":
    main()
