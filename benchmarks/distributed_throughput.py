"""Reptile tasks/s on 2 CPU cores: 2 processes x 1 thread (torchrun, gloo) against 1 process x 2 threads and
against the seeds' per-task deep-copy loop at 2 threads (and 1 process x 1 thread, for scaling), side by side.

    python benchmarks/distributed_throughput.py

Conv4, Omniglot 5-way 1-shot and 5-shot, meta-batch 6 (3 tasks per process), 5 inner SGD steps, CPU, the
settings of benchmarks/reptile_throughput.py otherwise, whose deep-copy loop is the baseline. Rounds interleave
the contenders so that machine load affects all alike; the 2-process contender is this script under
``torchrun --standalone --nproc-per-node 2`` with ``--worker``, timed inside the processes after a warm-up
iteration (start-up excluded). The machine's load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from edgeadapt.sdk import Conv4, MetaConfig, MetaTrainer, TaskBatch, distributed
from edgeadapt.sdk.recipes import make_sampler

from reptile_throughput import INNER_LR, INNER_STEPS, META_LR, FixedBatch, deepcopy_reptile_step
from report import markdown_table, write_section

META_BATCH = 6


def tasks(shots: int) -> TaskBatch:
    """The meta-batch every contender trains on (the same in every process)."""
    sampler, _ = make_sampler("omniglot", None, "train", 5, shots, 0, seed=0, training=True)
    return sampler.sample(META_BATCH)


def trainer(batch: TaskBatch) -> MetaTrainer:
    """edgeadapt's Reptile on ``batch`` (a process takes its share of it)."""
    torch.manual_seed(0)
    config = MetaConfig("reptile", INNER_LR, META_LR, INNER_STEPS, META_BATCH, num_iterations=10**9)
    return MetaTrainer(Conv4(ways=5), FixedBatch(batch), config)


def seconds_per_iteration(step: Callable[[], object], iterations: int) -> float:
    """Mean wall-clock seconds of ``step`` over ``iterations`` calls."""
    started = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - started) / iterations


def worker(shots: int, iterations: int) -> None:
    """One of the torchrun processes: warm up, meet, time ``iterations`` steps; rank 0 prints the result."""
    torch.set_num_threads(1)
    run = trainer(tasks(shots))
    run.step()
    distributed.all_sum(torch.zeros(1))  # a barrier: both processes start timing together
    seconds = seconds_per_iteration(run.step, iterations)
    if run.world.is_main:
        print(json.dumps({"seconds": seconds}))
    distributed.leave()


def two_processes(shots: int, iterations: int) -> float:
    """Seconds per meta-iteration of 2 processes x 1 thread under torchrun."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(Path(__file__).resolve()), "--worker", "--shots", str(shots), "--per-round", str(iterations)]
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def compare(shots: int, rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per meta-iteration of each contender over interleaved rounds."""
    batch = tasks(shots)
    ours = trainer(batch)
    loop_model = copy.deepcopy(ours.model)
    times: dict[str, list[float]] = {"1x1": [], "1x2": [], "loop": [], "2x1": []}
    for _ in range(rounds):
        torch.set_num_threads(2)
        times["1x2"].append(seconds_per_iteration(ours.step, per_round))
        times["loop"].append(seconds_per_iteration(lambda: deepcopy_reptile_step(loop_model, batch, META_LR),
                                                   per_round))
        torch.set_num_threads(1)
        times["1x1"].append(seconds_per_iteration(ours.step, per_round))
        times["2x1"].append(two_processes(shots, per_round))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shots", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.shots, args.per_round)
    load_before = os.getloadavg()[0]
    results = {shots: compare(shots, args.rounds, args.per_round) for shots in (1, 5)}
    load_after = os.getloadavg()[0]
    rate = lambda seconds: f"{META_BATCH / seconds:.1f}"  # noqa: E731
    rows = [[str(shots), rate(r["loop"]), rate(r["1x1"]), rate(r["1x2"]), rate(r["2x1"]),
             f"{r['loop'] / r['2x1']:.2f}x", f"{r['1x2'] / r['2x1']:.2f}x", f"{r['1x1'] / r['2x1']:.2f}x"]
            for shots, r in results.items()]
    for row in rows:
        print(row, flush=True)
    header = ["shots", "deep-copy loop, 2 threads (tasks/s)", "1 process x 1 thread", "1 process x 2 threads",
              "2 processes x 1 thread", "2x1 vs loop", "2x1 vs 1x2", "2x1 vs 1x1 (scaling)"]
    body = "\n".join([
        "## Distributed Reptile throughput: 2 processes x 1 thread vs 1 process x 2 threads vs a deep-copy loop", "",
        f"Conv4, Omniglot 5-way, meta-batch {META_BATCH}, {INNER_STEPS} inner SGD steps, CPU; median of "
        f"{args.rounds} interleaved rounds of {args.per_round} meta-iterations each; 2 processes: torchrun, gloo, "
        "OMP_NUM_THREADS=1, timed inside the processes after a warm-up. The deep-copy loop is "
        "benchmarks/reptile_throughput.py's.", "",
        *markdown_table(header, rows), "",
        f"Load average (1 min) {load_before:.1f} at the start and {load_after:.1f} at the end, on {os.cpu_count()} "
        "cores" + (": the machine was shared with other jobs, so these figures are only comparable with each other "
                   "(same run), not absolute." if max(load_before, load_after) > 1.0 else "."),
    ])
    write_section("distributed-throughput", body, "python benchmarks/distributed_throughput.py")


if __name__ == "__main__":
    main()
