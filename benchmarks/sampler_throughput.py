"""Episodic sampling speed: 5-way 10-shot (+5 queries per class) Omniglot tasks with rotations.

    python benchmarks/sampler_throughput.py

Compares ``EpisodeSampler`` (one vectorised gather per meta-batch) with a per-task Python loop
that picks classes and drawings with ``random.sample`` and stacks tensors, as most few-shot
libraries do, on the same rotated training split, in the same run.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from edgeadapt.sdk.recipes import make_sampler

from report import markdown_table, write_section

WAYS, SHOTS, QUERIES = 5, 10, 5


def per_task_loop(images: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, ...]:
    """One task the usual way: sample classes, then drawings per class, stack, build labels."""
    support, query = [], []
    for cls in rng.sample(range(images.shape[0]), WAYS):
        drawings = rng.sample(range(images.shape[1]), SHOTS + QUERIES)
        support += [images[cls, d] for d in drawings[:SHOTS]]
        query += [images[cls, d] for d in drawings[SHOTS:]]
    labels = torch.arange(WAYS)
    return (torch.stack(support), labels.repeat_interleave(SHOTS), torch.stack(query),
            labels.repeat_interleave(QUERIES))


def rate(draw, tasks_per_call: int, seconds: float) -> float:
    draw()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        draw()
        count += tasks_per_call
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sampler, data = make_sampler("omniglot", None, "train", WAYS, SHOTS, QUERIES, seed=0, training=True)
    rng = random.Random(0)
    rows = [("EpisodeSampler.sample(32)", rate(lambda: sampler.sample(32), 32, args.seconds)),
            ("EpisodeSampler, one task per call", rate(lambda: sampler.sample(1), 1, args.seconds)),
            ("per-task Python loop", rate(lambda: per_task_loop(sampler.dataset.images, rng), 1, args.seconds))]
    lines = ["## Task sampling speed", "",
             f"Omniglot training split with rotations ({data['classes']} classes), {WAYS}-way {SHOTS}-shot with "
             f"{QUERIES} queries per class, CPU, {args.seconds:.0f} s each.", ""]
    for name, tasks_per_second in rows:
        print(f"{name}: {tasks_per_second:.0f} tasks/s", flush=True)
    lines += markdown_table(["sampler", "tasks / s"], [[name, f"{per_second:,.0f}"] for name, per_second in rows])
    write_section("sampler-throughput", "\n".join(lines), "python benchmarks/sampler_throughput.py")


if __name__ == "__main__":
    main()
