"""Reptile tasks/s on 2 CPU cores: 2 processes x 1 thread (torchrun, gloo) against 1 process x 2 threads and
against the seeds' per-task deep-copy loop at 2 threads (and 1 process x 1 thread, for scaling), side by side,
for both ways edgeadapt adapts a meta-batch: all tasks at once with ``vmap`` and task by task (the CPU default).

    python benchmarks/distributed_throughput.py

Conv4, Omniglot 5-way 1-shot and 5-shot, meta-batch 6 (3 tasks per process), 5 inner SGD steps, CPU, the
settings of benchmarks/reptile_throughput.py otherwise, whose deep-copy loop is the baseline. Rounds interleave
the contenders so that machine load affects all alike; the 2-process contender is this script under
``torchrun --standalone --nproc-per-node 2`` with ``--worker``, timed inside the processes after a warm-up
iteration (start-up excluded). The machine's load average is recorded with the results, and so are the
floating-point operations of one task's adaptation (counted by ``torch.utils.flop_counter``) and the rate of a
large matrix product at 1 and 2 threads, the most these cores deliver to dense float32 arithmetic.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

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


def trainer(batch: TaskBatch, vectorise: bool) -> MetaTrainer:
    """edgeadapt's Reptile on ``batch`` (a process takes its share of it), vmap or task by task."""
    torch.manual_seed(0)
    config = MetaConfig("reptile", inner_lr=INNER_LR, outer_lr=META_LR, inner_steps=INNER_STEPS, meta_batch_size=META_BATCH,
                        num_iterations=10**9)
    return MetaTrainer(Conv4(ways=5), FixedBatch(batch), config, vectorise=vectorise)


def task_flops(batch: TaskBatch) -> int:
    """Floating-point operations of one task's adaptation: ``INNER_STEPS`` forward and backward passes."""
    model = Conv4(ways=5)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(batch.support_x[0]), batch.support_y[0]).backward()
    return INNER_STEPS * counter.get_total_flops()


def matmul_rate(threads: int, size: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of a ``size`` x ``size`` float32 matrix product at ``threads`` threads (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(seconds_per_iteration(lambda: a @ b, 1)[0] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def seconds_per_iteration(step: Callable[[], object], iterations: int) -> tuple[float, float]:
    """Mean wall-clock and CPU seconds (this process, all its threads) of ``step`` over ``iterations`` calls."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - started) / iterations, (time.process_time() - cpu) / iterations


def worker(shots: int, iterations: int, vectorise: bool) -> None:
    """One of the torchrun processes: warm up, meet, time ``iterations`` steps; rank 0 prints the result."""
    torch.set_num_threads(1)
    run = trainer(tasks(shots), vectorise)
    run.step()
    distributed.all_sum(torch.zeros(1))  # a barrier: both processes start timing together
    seconds, cpu = seconds_per_iteration(run.step, iterations)
    cpu = distributed.all_sum(torch.tensor([cpu], dtype=torch.float64)).item()  # both processes' CPU time
    if run.world.is_main:
        print(json.dumps({"seconds": seconds, "cpu": cpu}))
    distributed.leave()


def two_processes(shots: int, iterations: int, vectorise: bool) -> tuple[float, float]:
    """Wall-clock and CPU seconds (both processes) per meta-iteration of 2 processes x 1 thread under torchrun."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(Path(__file__).resolve()), "--worker", "--shots", str(shots), "--per-round", str(iterations),
               *([] if vectorise else ["--task-by-task"])]
    for _ in range(3):  # gloo now and then aborts a process as it exits ("terminate called without an active
        # exception", after the timing); such a run is started again
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode == 0:
            break
    else:
        raise RuntimeError(f"the 2-process contender failed 3 times:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["cpu"]


def busy_cpu_seconds() -> float:
    """CPU-seconds every process on the machine has spent busy since boot (/proc/stat, all cores)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def own_cpu_seconds() -> float:
    """CPU-seconds of this process and of the children it waited for (the torchrun contenders)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


# assumptions of the many-machine extrapolation: a ring all-reduce over plain Ethernet between machines
LINK_GBIT_S = 1.0  # bandwidth of each machine's link
LINK_LATENCY_S = 50e-6  # per message, one way


def reduced_bytes() -> int:
    """Bytes one process contributes to a meta-iteration's all-reduce: every parameter's meta-gradient in
    float64 and 4 numbers (MetaTrainer.reduce)."""
    return 8 * (sum(p.numel() for p in Conv4(ways=5).parameters()) + 4)


def extrapolated(rate_1x1: float, machines: int) -> tuple[float, float]:
    """Tasks/s and scaling efficiency of ``machines`` one-process machines, each adapting the tasks/s of one
    process (``rate_1x1``) on META_BATCH / 2 tasks per meta-iteration (the meta-batch grows with the machines), plus
    a ring all-reduce of :func:`reduced_bytes`: 2 (P - 1) messages of 1/P of them each way."""
    tasks = META_BATCH // 2
    compute = tasks / rate_1x1
    talk = 2 * (machines - 1) * (LINK_LATENCY_S + reduced_bytes() / machines * 8 / (LINK_GBIT_S * 1e9))
    rate = machines * tasks / (compute + talk)
    return rate, rate / (machines * rate_1x1)


CONTENDERS = ("loop 2 threads", "loop 1 thread", "vmap 1x1", "vmap 1x2", "vmap 2x1",
              "task-by-task 1x1", "task-by-task 1x2", "task-by-task 2x1")


def compare(shots: int, rounds: int, per_round: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds per meta-iteration of each contender over interleaved rounds."""
    batch = tasks(shots)
    ours = {"vmap": trainer(batch, vectorise=True), "task-by-task": trainer(batch, vectorise=False)}
    loop_model = copy.deepcopy(ours["vmap"].model)
    loop = lambda: deepcopy_reptile_step(loop_model, batch, META_LR)  # noqa: E731
    for threads in (2, 1):  # warm-up: oneDNN builds its kernels for each thread count on first use
        torch.set_num_threads(threads)
        loop()
        for run in ours.values():
            run.step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    for _ in range(rounds):
        for threads in (2, 1):
            torch.set_num_threads(threads)
            times[f"loop {threads} thread{'s' * (threads > 1)}"].append(seconds_per_iteration(loop, per_round))
            for mode, run in ours.items():
                times[f"{mode} 1x{threads}"].append(seconds_per_iteration(run.step, per_round))
        for mode in ours:
            times[f"{mode} 2x1"].append(two_processes(shots, per_round, vectorise=mode == "vmap"))
    return {name: (statistics.median(t[0] for t in values), statistics.median(t[1] for t in values))
            for name, values in times.items()}


def tables(results: dict[int, dict[str, tuple[float, float]]], flops: dict[int, int]) -> tuple[list, list, list]:
    """The contenders' rows, the 1 -> 2 process scaling rows and the many-machine extrapolation rows."""
    rate = lambda shots, name: META_BATCH / results[shots][name][0]  # noqa: E731
    cpu_rate = lambda shots, name: META_BATCH / results[shots][name][1]  # noqa: E731
    rows = [[str(shots), f"{flops[shots] / 1e9:.2f}", name, f"{rate(shots, name):.1f}",
             f"{rate(shots, name) * flops[shots] / 1e9:.1f}",
             f"{rate(shots, name) / rate(shots, 'loop 2 threads'):.2f}x", f"{cpu_rate(shots, name):.1f}",
             f"{cpu_rate(shots, name) * flops[shots] / 1e9:.1f}"]
            for shots in results for name in CONTENDERS]
    scaling = [[str(shots), mode, f"{rate(shots, mode + ' 1x1'):.1f}", f"{rate(shots, mode + ' 2x1'):.1f}",
                f"{rate(shots, mode + ' 2x1') / rate(shots, mode + ' 1x1'):.2f}x",
                f"{rate(shots, mode + ' 2x1') / rate(shots, mode + ' 1x1') / 2:.0%}"]
               for shots in results for mode in ("vmap", "task-by-task")]
    many = [[str(shots), str(machines), *(f"{v:.1f}" if i == 0 else f"{v:.0%}" for i, v in
                                          enumerate(extrapolated(rate(shots, "task-by-task 1x1"), machines)))]
            for shots in results for machines in (2, 8, 32, 128)]
    return rows, scaling, many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task-by-task", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shots", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.shots, args.per_round, vectorise=not args.task_by_task)
    started, busy, own = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    peak = {threads: matmul_rate(threads) for threads in (1, 2)}
    flops = {shots: task_flops(tasks(shots)) for shots in (1, 5)}
    results = {shots: compare(shots, args.rounds, args.per_round) for shots in (1, 5)}
    others = (busy_cpu_seconds() - busy - own_cpu_seconds() + own) / ((time.perf_counter() - started) * os.cpu_count())
    rows, scaling, many = tables(results, flops)
    rate = lambda shots, name: META_BATCH / results[shots][name][0]  # noqa: E731
    for row in rows + scaling + many:
        print(row, flush=True)
    needed = {shots: 2 * rate(shots, "loop 2 threads") * flops[shots] / 1e9 for shots in results}
    body = "\n".join([
        "## Distributed Reptile throughput: 2 processes x 1 thread vs 1 process x 2 threads vs a deep-copy loop", "",
        f"Conv4, Omniglot 5-way, meta-batch {META_BATCH}, {INNER_STEPS} inner SGD steps, CPU; median of "
        f"{args.rounds} interleaved rounds of {args.per_round} meta-iterations each; PxT = P processes x T threads; "
        "2 processes: torchrun, gloo, OMP_NUM_THREADS=1, timed inside the processes after a warm-up. The deep-copy "
        "loop is benchmarks/reptile_throughput.py's. \"vmap\" adapts all tasks of a process at once (each "
        "convolution becomes a grouped one); \"task-by-task\" (the CPU default where no frozen layers are cached, "
        "`MetaTrainer(vectorise=None)`) "
        "runs `InnerLoop.inner_update` on one task after another with first-order gradients and channels-last "
        "tensors. GFLOP/s counts the adaptation's forward and backward passes (torch.utils.flop_counter).", "",
        *markdown_table(["shots", "GFLOP per task", "contender", "tasks/s", "GFLOP/s", "vs loop 2 threads",
                         "tasks per CPU-second", "GFLOP per CPU-second"], rows), "",
        "CPU-seconds are those of every thread and process of a contender (time.process_time; threads waiting "
        "for each other count): work per core, far less sensitive to other jobs on the machine than wall-clock "
        "rates, which under load penalise multi-threaded contenders most.", "",
        "Under load, wall-clock ratios between process counts do not measure the 2x goal: the scheduler gives a "
        "2-process contender about twice the CPU share of a 1-process one, and 2-thread contenders wait on each "
        "other's preempted threads. The CPU-second columns do: on 2 idle cores, 2 processes x 1 thread reach at "
        "most twice their tasks per CPU-second.",
        "", "Scaling from 1 to 2 processes (1 thread each):", "",
        *markdown_table(["shots", "adaptation", "1 process", "2 processes", "speed-up", "scaling efficiency"],
                        scaling), "",
        f"Many machines, extrapolated, not measured: each machine one process of the task-by-task 1x1 rate above "
        f"on {META_BATCH // 2} tasks per meta-iteration (the meta-batch grows with the machines), plus a ring "
        f"all-reduce of the meta-gradient, {reduced_bytes() / 1024:.0f} KiB per process per meta-iteration "
        f"(float64, `MetaTrainer.reduce`), over {LINK_GBIT_S:g} Gbit/s links with {LINK_LATENCY_S * 1e6:.0f} us "
        "per message. Communication grows with 2 (P - 1) messages while each machine's work stays the same, so "
        "efficiency falls with the machine count; the all-reduce is synchronous (no overlap with computing).", "",
        *markdown_table(["shots", "machines", "tasks/s", "scaling efficiency"], many), "",
        f"A 1024x1024 float32 matrix product runs at {peak[1]:.0f} GFLOP/s on 1 thread and {peak[2]:.0f} on 2 "
        "(the cores' reachable dense rate, same run). Twice the loop's rate at 2 threads needs "
        + ", ".join(f"{needed[s]:.0f} GFLOP/s at {s} shot{'s' * (s > 1)} ({needed[s] / peak[2]:.0%} of that)"
                    for s in results) + ".", "",
        f"Other processes used {max(others, 0):.0%} of the {os.cpu_count()} cores while this ran (/proc/stat's busy "
        "time less this benchmark's own)" + (": the machine was shared, so these figures are only comparable with "
                                             "each other (same run), not absolute." if others > 0.05 else
                                             ": an idle machine."),
    ])
    write_section("distributed-throughput", body, "python benchmarks/distributed_throughput.py")


if __name__ == "__main__":
    main()
