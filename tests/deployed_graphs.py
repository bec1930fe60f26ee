"""Test helper (torch): the graphs an artifact holds for a model's inner loop, exported as ``export_artifact`` cuts
them (embed over the frozen layers, adapt and predict over the adapted part), with the whole model's inner loop to
compare against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgeadapt.export.artifact import feature_shape
from edgeadapt.export.onnx_graphs import GraphSpec, adapted_names, export_adapt, export_embed, export_predict
from edgeadapt.sdk import InnerLoop
from edgeadapt.sdk.frozen_layers import part_name, split_inner_loop


@dataclass
class DeployedGraphs:
    """onnxruntime sessions of one model's graphs (``embed.onnx`` only where the scope freezes layers)."""

    inner: InnerLoop  # the whole model's, on inputs: the reference
    part_inner: InnerLoop  # the adapted part's, on features: what the graphs were exported from
    part_spec: GraphSpec
    folder: Path
    sessions: dict[str, ort.InferenceSession]

    def embed(self, x: torch.Tensor) -> np.ndarray:
        """``x``'s features (``x`` itself where nothing is frozen)."""
        if "embed.onnx" not in self.sessions:
            return x.numpy()
        return self.sessions["embed.onnx"].run(None, {"x": x.numpy()})[0]

    def adapt(self, x: torch.Tensor, y: torch.Tensor, example_mask: torch.Tensor,
              class_mask: torch.Tensor) -> dict[str, np.ndarray]:
        """The adapted parameters, named as the whole model's."""
        feeds = {"support_features": self.embed(x), "support_y": y.numpy(), "example_mask": example_mask.numpy(),
                 "class_mask": class_mask.numpy()}
        outputs = dict(zip(adapted_names(self.part_inner), self.sessions["adapt.onnx"].run(None, feeds)))
        model, scope = self.inner.model, self.inner.scope
        assert sorted(outputs) == sorted(part_name(model, scope, n) for n in adapted_names(self.inner))
        return {name: outputs[part_name(model, scope, name)] for name in adapted_names(self.inner)}

    def predict(self, queries: torch.Tensor, class_mask: torch.Tensor, params: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities for ``queries`` with ``params`` (named as the whole model's)."""
        model, scope = self.inner.model, self.inner.scope
        feeds = {"features": self.embed(queries), "class_mask": class_mask.numpy(),
                 **{part_name(model, scope, k): v for k, v in params.items()}}
        return self.sessions["predict.onnx"].run(None, feeds)[0]


def export_deployed(inner: InnerLoop, spec: GraphSpec, folder: Path) -> DeployedGraphs:
    """``inner``'s model cut by its scope and exported to ``folder`` as an artifact holds it."""
    embed, part_inner = split_inner_loop(inner)
    part_spec = GraphSpec(feature_shape(embed, spec.input_shape), spec.max_ways, spec.max_shots)
    graphs = ["adapt.onnx", "predict.onnx"]
    if embed is not None:
        export_embed(embed, spec.input_shape, folder / "embed.onnx")
        graphs.append("embed.onnx")
    export_adapt(part_inner, part_spec, folder / "adapt.onnx")
    export_predict(part_inner, part_spec, folder / "predict.onnx")
    sessions = {f: ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"]) for f in graphs}
    return DeployedGraphs(inner, part_inner, part_spec, folder, sessions)
