"""What the deployment benchmarks share: the artifacts they measure, tasks from the validation
alphabets, and PyTorch's own adaptation of the same model as the reference.

The "all" artifact is the pretrained ``models/omniglot-conv4``. The "head" artifact is the same
meta-learned weights exported with head-only adaptation (built once into ``runs/``), so both scopes
are measured on the same network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from edgeadapt.export import export_artifact
from edgeadapt.sdk import load_checkpoint, save_checkpoint
from edgeadapt.sdk.inner_loop import InnerLoop, mask_classes
from edgeadapt.sdk.recipes import make_sampler

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "models" / "omniglot-conv4"
HEAD_ARTIFACT = ROOT / "runs" / "omniglot-conv4-head-artifact"
TASKS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (ways, shots)


def data_dir() -> Path:
    """$EDGEADAPT_DATA, else the shared data folder beside the project."""
    return Path(os.environ.get("EDGEADAPT_DATA", ROOT.parent / "shared" / "data"))


def artifact(scope: str) -> Path:
    """The artifact folder for ``scope``, exporting the head-only variant on first use."""
    if scope == "all":
        return PRETRAINED
    if not (HEAD_ARTIFACT / "manifest.json").exists():
        model, config = load_checkpoint(PRETRAINED / "checkpoint")
        config.pop("model")
        config["training"]["scope"] = "head"
        checkpoint = save_checkpoint(HEAD_ARTIFACT.with_name(HEAD_ARTIFACT.name + "-checkpoint"), model, config)
        export_artifact(checkpoint, HEAD_ARTIFACT)
    return HEAD_ARTIFACT


def reference(artifact_path: Path, checkpoint: Path = PRETRAINED / "checkpoint") -> InnerLoop:
    """PyTorch's inner loop for the checkpoint the artifact was exported from, with the artifact's scope."""
    manifest = json.loads((artifact_path / "manifest.json").read_text())
    model, _ = load_checkpoint(checkpoint)
    return InnerLoop(model, manifest["inner_lr"], manifest["inner_steps"], "cross_entropy", manifest["scope"])


def tasks(ways: int, shots: int, count: int, seed: int = 0, query_shots: int = 5):
    """``count`` tasks from the validation alphabets as numpy (support_x, support_y, query_x, query_y)."""
    sampler, _ = make_sampler("omniglot", data_dir(), "validation", ways, shots, query_shots, seed, training=False)
    for _ in range(count):
        b = sampler.sample(1)
        yield (b.support_x[0].numpy(), b.support_y[0].numpy(), b.query_x[0].numpy(), b.query_y[0].numpy())


def pytorch_probabilities(inner: InnerLoop, support_x: np.ndarray, support_y: np.ndarray,
                          query_x: np.ndarray) -> np.ndarray:
    """Adapt with ``edgeadapt.sdk`` and return the query probabilities over the task's classes."""
    ways = int(support_y.max()) + 1
    outputs = inner.model.head.out_features
    class_mask = (torch.arange(outputs) < ways).float()
    params = inner.inner_update(inner.params(), torch.from_numpy(support_x), torch.from_numpy(support_y),
                                class_mask=class_mask)
    with torch.no_grad():
        logits = mask_classes(inner.forward_with_weights(torch.from_numpy(query_x), params), class_mask)
    return torch.softmax(logits, dim=-1)[:, :ways].numpy()
