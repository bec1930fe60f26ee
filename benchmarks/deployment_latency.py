"""Adapt latency on one thread: the runtime's backends against PyTorch adapting the same model.

    python benchmarks/deployment_latency.py [--repeats 30]

Contenders, each adapting the pretrained model to the same support sets with the same inner loop
(steps, learning rate, scope): onnxruntime and ExecuTorch through ``edgeadapt.runtime``; PyTorch
eager, the classic reference (deep-copy the model, ``torch.optim.SGD`` loop); and the same loop
under ``torch.func`` (``edgeadapt.sdk``'s ``InnerLoop.inner_update``). Rounds are interleaved so that
machine load affects all alike. Goals: onnxruntime at most 0.3x PyTorch eager; ExecuTorch within
1.5x of onnxruntime. GFLOP/s counts the adaptation's floating-point operations (PyTorch's
FlopCounterMode, multiply-add = 2) against this core's fp32 FMA peak.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import edgeadapt.runtime as rt
from deployment import artifact, parse_deployment_arguments, reference, tasks
from edgeadapt.sdk.heads import prototype_head
from edgeadapt.sdk.inner_loop import InnerLoop, mask_classes
from report import markdown_table, write_section

LATENCY_TASKS = ((5, 1), (5, 5), (20, 1), (20, 5))


def eager_adapt(inner: InnerLoop, support_x: torch.Tensor, support_y: torch.Tensor) -> torch.nn.Module:
    """Deep-copy the model, start a prototype head as the inner loop does, and run ``inner_steps`` of
    ``torch.optim.SGD`` on the adapted parameters."""
    model = copy.deepcopy(inner.model)
    if inner.head_init == "prototypes":
        with torch.no_grad():
            weight, bias = prototype_head(model.features(support_x), support_y, torch.ones(len(support_y)),
                                          inner.ways, inner.head_scale)
        model.head = torch.nn.Linear(weight.shape[1], inner.ways)
        model.head.weight.data, model.head.bias.data = weight, bias
    adapted = [p for name, p in model.named_parameters() if inner.is_adapted(name)]
    for name, p in model.named_parameters():
        p.requires_grad_(inner.is_adapted(name))
    optimizer = torch.optim.SGD(adapted, lr=inner.inner_lr)
    class_mask = (torch.arange(model.head.out_features) <= support_y.max()).float()
    for _ in range(inner.inner_steps):
        optimizer.zero_grad()
        F.cross_entropy(mask_classes(model(support_x), class_mask), support_y).backward()
        optimizer.step()
    return model


def func_adapt(inner: InnerLoop, support_x: torch.Tensor, support_y: torch.Tensor) -> dict:
    class_mask = (torch.arange(inner.ways) <= support_y.max()).float()
    return inner.inner_update(inner.params(), support_x, support_y, class_mask=class_mask)


def fma_peak_gflops() -> tuple[float, str]:
    """Single-core fp32 peak: clock x SIMD lanes x 2 (multiply-add) x 2 FMA units (assumed, as on current x86)."""
    info = Path("/proc/cpuinfo").read_text()
    mhz = float(next(line.split(":")[1] for line in info.splitlines() if line.startswith("cpu MHz")))
    flags = next(line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags"))
    lanes = 16 if "avx512f" in flags else 8 if "fma" in flags else 4
    peak = mhz / 1000 * lanes * 2 * 2
    return peak, f"{mhz / 1000:.2f} GHz x {lanes} fp32 lanes x 2 (FMA) x 2 FMA units = {peak:.0f} GFLOP/s"


def adapt_flops(inner: InnerLoop, support_x: torch.Tensor, support_y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        func_adapt(inner, support_x, support_y)
    return counter.get_total_flops()


def time_rounds(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    args = parse_deployment_arguments(__doc__, "--repeats", 30, "timed rounds per contender and task")
    peak, peak_text = fma_peak_gflops()
    rows, sizes = [], []
    for scope in args.scopes:
        path = artifact(scope)
        inner = reference(path)
        learners = {b: rt.load(path, backend=b, threads=1) for b in args.backends}
        sizes = json.loads((path / "manifest.json").read_text()).get("executorch", {}).get("support_sizes", [])
        for ways, shots in LATENCY_TASKS:
            support_x, support_y, _, _ = next(tasks(ways, shots, 1, seed=2))
            labels = support_y.tolist()
            tx, ty = torch.from_numpy(support_x), torch.from_numpy(support_y)
            contenders: dict[str, Callable[[], object]] = {
                "PyTorch eager (deepcopy + SGD)": lambda: eager_adapt(inner, tx, ty),
                "PyTorch torch.func": lambda: func_adapt(inner, tx, ty),
            }
            for b, learner in learners.items():
                contenders[b] = lambda learner=learner: learner.adapt(support_x, labels)
            times = time_rounds(contenders, args.repeats)
            flops = adapt_flops(inner, tx, ty)
            eager = statistics.median(times["PyTorch eager (deepcopy + SGD)"])
            onnx = statistics.median(times["onnxruntime"]) if "onnxruntime" in times else None
            for name, values in times.items():
                p50 = statistics.median(values)
                rows.append({"scope": scope, "task": f"{ways}-way {shots}-shot", "name": name,
                             "p50": p50 * 1e3, "p95": percentile(values, 95) * 1e3, "vs_eager": p50 / eager,
                             "vs_onnx": p50 / onnx if onnx else None, "gflops": flops / p50 / 1e9})
                print(rows[-1], flush=True)
    load = os.getloadavg()
    ladder = ", ".join(str(n) for n in sizes)
    lines = ["## Deployment: adapt latency (one thread)", "",
             "Pretrained `models/omniglot-conv4` (Conv4, prototype head, 3 SGD steps; head scope, as shipped; all = "
             "the same weights adapting the whole network). Time of one `adapt` call on a loaded learner (PyTorch: one adaptation "
             f"of the loaded model), {args.repeats} interleaved rounds after a warm-up. "
             f"Peak: {peak_text}. Goals: onnxruntime <= 0.3x PyTorch eager, ExecuTorch <= 1.5x onnxruntime. "
             f"ExecuTorch runs the `adapt_<n>` method of the smallest support size n >= the task's (the ladder of "
             f"`model.pte`: {ladder}); onnxruntime's graph has a dynamic size. Load average after the run "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; {os.cpu_count()} cores): the rounds are "
             "interleaved, so the ratios compare like with like, but absolute times are inflated on a loaded host.", ""]
    lines += markdown_table(
        ["scope", "task", "contender", "p50 ms", "p95 ms", "p50 vs PyTorch eager", "p50 vs onnxruntime", "GFLOP/s",
         "% of FMA peak"],
        [[r["scope"], r["task"], r["name"], f"{r['p50']:.2f}", f"{r['p95']:.2f}", f"{r['vs_eager']:.2f}x",
          f"{r['vs_onnx']:.2f}x" if r["vs_onnx"] else "-", f"{r['gflops']:.1f}", f"{100 * r['gflops'] / peak:.1f}%"]
         for r in rows])
    write_section("deployment-latency", "\n".join(lines), f"python benchmarks/deployment_latency.py --repeats "
                  f"{args.repeats} --scopes {' '.join(args.scopes)} --backends {' '.join(args.backends)}")


if __name__ == "__main__":
    main()
