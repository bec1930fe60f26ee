"""Why the activation decides fidelity: how far the exact adaptation moves when its input moves by rounding.

    python benchmarks/activation_sensitivity.py [--tasks 30]

Adaptation (5 SGD steps) is computed in float64 twice per task: on the support set, and on the
support set multiplied by (1 + 1e-6 * noise). With ReLU, whose gradient jumps at 0, a change of the
input that small can flip which units are active during adaptation and move the adapted network far
more than 1e-6; a float32 implementation that rounds differently from PyTorch's does the same.
With ELU the gradient is continuous and the change stays of the order of the perturbation. Both
networks carry the same weights (the pretrained checkpoint's), so only the activation differs.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from deployment import PRETRAINED, TASKS, float64_twin, pytorch_probabilities, tasks
from edgeadapt.sdk import Conv4, load_checkpoint
from edgeadapt.sdk.inner_loop import inner_loop_from_config
from report import markdown_table, write_section

PERTURBATION = 1e-6


def with_activation(model: torch.nn.Module, activation: str) -> Conv4:
    twin = Conv4(**{**model.config, "activation": activation})
    twin.load_state_dict(model.state_dict())
    return twin


def measure(count: int) -> list[dict]:
    base, config = load_checkpoint(PRETRAINED / "checkpoint")
    training = config["training"]
    noise = torch.Generator().manual_seed(0)
    rows = []
    for activation in ("relu", "elu"):
        model = with_activation(base, activation)
        single = inner_loop_from_config(model, training, scope="all", head_init="learned")  # the whole network
        exact = float64_twin(single)
        for ways, shots in TASKS:
            moved, single_error = [], []
            for support_x, support_y, query_x, _ in tasks(ways, shots, count, seed=1):
                x64, q64 = support_x.astype(np.float64), query_x.astype(np.float64)
                truth = pytorch_probabilities(exact, x64, support_y, q64)
                scale = 1 + PERTURBATION * torch.randn(x64.shape, generator=noise, dtype=torch.float64).numpy()
                nudged = pytorch_probabilities(exact, x64 * scale, support_y, q64)
                moved.append(float(np.abs(nudged - truth).max()))
                single_error.append(float(np.abs(pytorch_probabilities(single, support_x, support_y, query_x)
                                                 - truth).max()))
            rows.append({"activation": activation, "task": f"{ways}-way {shots}-shot", "tasks": count,
                         "moved_max": max(moved), "moved_over": sum(m > 1e-4 for m in moved),
                         "float32_max": max(single_error), "float32_over": sum(e > 1e-4 for e in single_error)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30, help="tasks per activation and task size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(args.tasks)
    lines = ["## Why the activation decides fidelity", "",
             "The pretrained model's weights with ReLU and with ELU, full-network adaptation on validation "
             f"tasks. 'Moved': the largest change of a query probability when the exact (float64) adaptation's "
             f"support set is multiplied by 1 + {PERTURBATION:g} x noise, i.e. an input change of the size of "
             "float32 rounding. 'float32 error': PyTorch float32's largest difference from the exact result. "
             "Counts: tasks above 1e-4.", ""]
    lines += markdown_table(
        ["activation", "task", "tasks", "moved (max)", "tasks moved > 1e-4", "float32 error (max)",
         "tasks with error > 1e-4"],
        [[r["activation"], r["task"], str(r["tasks"]), f"{r['moved_max']:.1e}", str(r["moved_over"]),
          f"{r['float32_max']:.1e}", str(r["float32_over"])] for r in rows])
    write_section("activation-sensitivity", "\n".join(lines), "python benchmarks/activation_sensitivity.py")


if __name__ == "__main__":
    main()
