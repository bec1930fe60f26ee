"""What the deployment benchmarks share: the artifacts they measure, tasks from the validation
alphabets, and PyTorch's own adaptation of the same model as the reference.

The "head" artifact is the pretrained ``models/omniglot-conv4`` (head-only adaptation, its default). The "all"
artifact is the same weights exported with whole-network adaptation (built once into ``runs/``), so both
scopes are measured on the same network.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from edgeadapt.export import export_artifact
from edgeadapt.sdk import load_checkpoint
from edgeadapt.sdk.datasets import find_data_dir
from edgeadapt.sdk.inner_loop import InnerLoop, inner_loop_from_config
from edgeadapt.sdk.recipes import make_sampler

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "models" / "omniglot-conv4"
FULL_ARTIFACT = ROOT / "runs" / "omniglot-conv4-all-artifact"
TASKS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (ways, shots)


def parse_deployment_arguments(doc: str, count: str, default: int, help: str) -> argparse.Namespace:
    """A deployment benchmark's options: ``count`` (an int), which backends and which scopes to measure.

    Also pins torch to one thread, as every deployment measurement runs.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(count, type=int, default=default, help=help)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "executorch"])
    parser.add_argument("--scopes", nargs="+", default=["head", "all"], choices=["head", "all"],
                        help="head: the shipped artifact; all: the same weights adapting the whole network")
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args


def artifact(scope: str) -> Path:
    """The artifact folder for ``scope``, exporting the whole-network variant on first use."""
    if scope == "head":
        return PRETRAINED
    if not (FULL_ARTIFACT / "manifest.json").exists():
        export_artifact(PRETRAINED / "checkpoint", FULL_ARTIFACT, scope="all")
    return FULL_ARTIFACT


def reference(artifact_path: Path, checkpoint: Path = PRETRAINED / "checkpoint") -> InnerLoop:
    """PyTorch's inner loop for the checkpoint the artifact was exported from, as the artifact's manifest sets it."""
    manifest = json.loads((artifact_path / "manifest.json").read_text())
    model, _ = load_checkpoint(checkpoint)
    settings = {k: manifest[k] for k in ("inner_lr", "inner_steps", "scope", "head_init", "head_scale")}
    ways = manifest["max_ways"] if manifest["head_init"] != "learned" else None
    return inner_loop_from_config(model, {}, ways=ways, **settings)


def tasks(ways: int, shots: int, count: int, seed: int = 0, query_shots: int = 5, within_alphabet: bool = False):
    """``count`` tasks from the validation alphabets as numpy (support_x, support_y, query_x, query_y)."""
    sampler, _ = make_sampler("omniglot", find_data_dir(), "validation", ways, shots, query_shots, seed, training=False,
                              within_alphabet=within_alphabet)
    for _ in range(count):
        b = sampler.sample(1)
        yield (b.support_x[0].numpy(), b.support_y[0].numpy(), b.query_x[0].numpy(), b.query_y[0].numpy())


def float64_twin(inner: InnerLoop) -> InnerLoop:
    """The same inner loop on a float64 copy of its model: the reference that float32 engines are measured against."""
    return dataclasses.replace(inner, model=copy.deepcopy(inner.model).double())


def pytorch_probabilities(inner: InnerLoop, support_x: np.ndarray, support_y: np.ndarray,
                          query_x: np.ndarray) -> np.ndarray:
    """Adapt with ``edgeadapt.sdk`` and return the query probabilities over the task's classes."""
    ways = int(support_y.max()) + 1
    class_mask = (torch.arange(inner.ways) < ways).float()
    probabilities = inner.probabilities(torch.from_numpy(support_x), torch.from_numpy(support_y),
                                        torch.from_numpy(query_x), class_mask)
    return probabilities[:, :ways].numpy()
