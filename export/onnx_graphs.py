"""ONNX graphs of the frozen layers (``embed``), the adaptation routine (``adapt``) and inference with adapted
weights (``predict``).

``embed`` maps inputs (any batch size) to features through the layers the scope never adapts, their weights
inside; ``adapt`` and ``predict`` work on those features (:func:`~edgeadapt.sdk.frozen_layers.deployed_split`), so
the frozen weights are stored once. ``adapt`` runs the whole inner loop, gradients included, in stock ONNX operators: it takes a
support set of 2..``max_ways * max_shots`` examples (a dynamic size, so small tasks cost little)
with per-example weights (1.0, or 0.0 for padding) and a class mask, starts from the meta-learned
weights stored in the graph, and returns the adapted parameters. ``predict``
maps features (any batch size), the class mask and adapted parameters to class probabilities.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
import torch
from torch import nn
from torch._dynamo.source import ConstantSource
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

from edgeadapt.runtime.format.names import ADAPT_INPUTS, EMBED_INPUTS, EMBED_OUTPUTS, PREDICT_INPUTS, PREDICT_OUTPUTS
from edgeadapt.sdk.inner_loop import InnerLoop

from .decompositions import Decompositions, export_decompositions
from .onnx_rewrites import rewrite_slow_operators

OPSET = 18


MAX_BATCH = 1 << 16  # inputs per embed or predict call


@dataclass(frozen=True)
class GraphSpec:
    """Fixed sizes of the adapt and predict graphs: examples of ``input_shape`` (the features ``embed`` gives, or
    the inputs where there is no ``embed``), up to ``max_ways`` x ``max_shots`` support."""

    input_shape: tuple[int, ...]
    max_ways: int
    max_shots: int

    @property
    def support_size(self) -> int:
        return self.max_ways * self.max_shots


def adapted_names(inner: InnerLoop) -> list[str]:
    """Names of the parameters the inner loop changes, in graph output order."""
    return [name for name in inner.params() if inner.is_adapted(name)]


def frozen_names(inner: InnerLoop) -> list[str]:
    return [name for name in inner.params() if not inner.is_adapted(name)]


def example_adapted(inner: InnerLoop, spec: GraphSpec) -> dict[str, torch.Tensor]:
    """Adapted parameters of the right shapes (a head of ``max_ways`` rows for a zeros or prototype head)."""
    support_x, support_y, example_mask, class_mask = _example_adapt_inputs(spec, spec.max_ways)
    support_y = torch.arange(spec.max_ways)
    params = inner.inner_update(inner.params(), support_x, support_y, steps=0, example_mask=example_mask,
                                class_mask=class_mask)
    return {name: params[name].detach() for name in adapted_names(inner)}


class _Frozen(nn.Module):
    """Calls ``fn(*inputs, *weights)`` with ``weights`` held as buffers, so export stores them in the graph."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], weights: list[torch.Tensor]):
        super().__init__()
        self.fn = fn
        self.count = len(weights)
        for i, w in enumerate(weights):
            self.register_buffer(f"weight_{i}", w.detach().clone())

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fn(*inputs, *(getattr(self, f"weight_{i}") for i in range(self.count)))


def _example_adapt_inputs(spec: GraphSpec, n: int) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(n, *spec.input_shape), torch.zeros(n, dtype=torch.int64), torch.ones(n),
            torch.ones(spec.max_ways))


def trace_adapt(inner: InnerLoop, spec: GraphSpec, decompositions: Decompositions | None = None,
                fixed_support: int | None = None) -> torch.fx.GraphModule:
    """The inner loop as an ATen graph of ``(support_x, support_y, example_mask, class_mask, *params)``.

    Traced with ``make_fx`` through ``torch.func.grad`` and ``decompositions`` (default: the export
    decompositions), so the backward pass is made of forward operators that ONNX can express;
    The support size is symbolic unless ``fixed_support`` gives it.
    """
    names = list(inner.params())
    adapted = adapted_names(inner)

    def adapt(support_x, support_y, example_mask, class_mask, *params):
        given = dict(zip(names, params))
        out = inner.inner_update(given, support_x, support_y, example_mask=example_mask, class_mask=class_mask)
        # a parameter no step changed (zero steps) is returned as a copy: ONNX outputs must be computed values, and
        # the exporter names a returned weight apart from its stored copy
        return tuple(out[n].clone() if out[n] is given[n] else out[n] for n in adapted)

    example = _example_adapt_inputs(spec, fixed_support or spec.support_size) + tuple(inner.params().values())
    table = decompositions or export_decompositions()
    # the inner loop's own constants (per-parameter rates) enter the graph as constants
    return _trace(adapt, table, example, dynamic=0 if fixed_support else 3)  # support_x, support_y, example_mask


def _trace(fn: Callable, table: Decompositions, example: tuple[torch.Tensor, ...],
           dynamic: int) -> torch.fx.GraphModule:
    """``make_fx(fn)`` on ``example`` with ``table``: the first dimension of the first ``dynamic`` inputs is one
    symbolic size, every other dimension is static (``dynamic`` 0: the example's sizes throughout).

    Only those dimensions get a symbol. With every size symbolic (``tracing_mode="symbolic"`` on real inputs), a
    support size equal to some weight's dimension (10 examples, a batch-norm layer of 10 channels) shares its symbol
    (duck sizing) and is pinned to that value by the layer's shape check, and a deep network's weight sizes make
    tracing several times slower.
    """
    if not dynamic:
        graph = make_fx(fn, decomposition_table=table, tracing_mode="real", _allow_non_fake_inputs=True)(*example)
        return _without_constant_copies(graph)
    fake_mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)

    def fake(i: int, tensor: torch.Tensor) -> torch.Tensor:
        sizes = [DimDynamic.DYNAMIC if i < dynamic and d == 0 else DimDynamic.STATIC for d in range(tensor.dim())]
        return fake_mode.from_tensor(tensor, source=ConstantSource(f"input{i}"),
                                     symbolic_context=StatelessSymbolicContext(dynamic_sizes=sizes))

    fakes = [fake(i, tensor) for i, tensor in enumerate(example)]
    graph = make_fx(fn, decomposition_table=table, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*fakes)
    return _without_constant_copies(graph)


def _without_constant_copies(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` with ``lift_fresh_copy(constant)`` replaced by the constant itself.

    A constant first created while tracing (the one-hot im2col kernels) is recorded behind such a copy,
    and XNNPACK only delegates a convolution whose weight is the constant itself.
    """
    for node in list(graph.graph.nodes):
        if node.target is torch.ops.aten.lift_fresh_copy.default and node.args[0].op == "get_attr":
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.recompile()
    return graph


def adapt_program(inner: InnerLoop, spec: GraphSpec, decompositions: Decompositions | None = None,
                  fixed_support: int | None = None) -> torch.export.ExportedProgram:
    """The ``adapt`` routine as an ExportedProgram, the model's current (meta-learned) weights inside.

    It takes 1..``spec.support_size`` support examples, or exactly ``fixed_support`` (smaller tasks
    padded with example weight 0.0).
    """
    module = _Frozen(trace_adapt(inner, spec, decompositions, fixed_support), list(inner.params().values()))
    if fixed_support is not None:
        return torch.export.export(module, _example_adapt_inputs(spec, fixed_support))
    support = torch.export.Dim("support", min=1, max=spec.support_size)
    shapes = ({0: support}, {0: support}, {0: support}, None)
    return torch.export.export(module, _example_adapt_inputs(spec, spec.support_size), dynamic_shapes=(shapes,))


def embed_program(layers: nn.Sequential, input_shape: tuple[int, ...], max_batch: int = MAX_BATCH,
                  decompositions: Decompositions | None = None) -> torch.export.ExportedProgram:
    """``x -> features`` through the frozen ``layers`` (weights and statistics inside) as an ExportedProgram of
    1..``max_batch`` inputs; ``decompositions``, when given, are applied while tracing (ONNX needs none)."""
    state = layers.eval().state_dict()
    names = list(state)

    def embed(x, *weights):
        return (torch.func.functional_call(layers, dict(zip(names, weights)), (x,)),)

    example = (torch.zeros(2, *input_shape),)
    if decompositions is not None:
        embed = _trace(embed, decompositions, (*example, *state.values()), dynamic=1)  # the batch
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return torch.export.export(_Frozen(embed, list(state.values())), example, dynamic_shapes=(({0: batch},),))


def predict_program(inner: InnerLoop, spec: GraphSpec, max_batch: int = MAX_BATCH,
                    decompositions: Decompositions | None = None) -> torch.export.ExportedProgram:
    """``(x, class_mask, *adapted params) -> probabilities`` as an ExportedProgram; frozen weights inside.

    ``decompositions``, when given, are applied while tracing (ONNX needs none).
    """
    adapted, frozen = adapted_names(inner), frozen_names(inner)
    params = inner.params()

    def predict(x, class_mask, *weights):
        values = dict(zip(adapted + frozen, weights))
        return (inner.predict_probabilities(x, values, class_mask),)

    adapted_example = example_adapted(inner, spec)
    example = (torch.zeros(2, *spec.input_shape), torch.ones(spec.max_ways), *(adapted_example[n] for n in adapted))
    frozen_weights = [params[n] for n in frozen]
    if decompositions is not None:  # traced first, so that constants the decompositions make are kept
        predict = _trace(predict, decompositions, (*example, *frozen_weights), dynamic=1)  # the batch
    module = _Frozen(predict, frozen_weights)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    dynamic = ({0: batch}, None) + (None,) * len(adapted)
    return torch.export.export(module, example, dynamic_shapes=(dynamic,))  # one entry: the *inputs tuple


def export_embed(layers: nn.Sequential, input_shape: tuple[int, ...], path: str | os.PathLike) -> onnx.ModelProto:
    """Write the ``embed`` graph of the frozen ``layers`` to ``path``."""
    return _to_onnx(embed_program(layers, input_shape), list(EMBED_INPUTS), list(EMBED_OUTPUTS), path)


def export_adapt(inner: InnerLoop, spec: GraphSpec, path: str | os.PathLike,
                 names: list[str] | None = None) -> onnx.ModelProto:
    """Write the ``adapt`` graph to ``path``; its outputs are called ``names`` (default: the adapted parameters'
    names in ``inner``'s model)."""
    return _to_onnx(adapt_program(inner, spec), list(ADAPT_INPUTS), names or adapted_names(inner), path)


def export_predict(inner: InnerLoop, spec: GraphSpec, path: str | os.PathLike,
                   names: list[str] | None = None) -> onnx.ModelProto:
    """Write the ``predict`` graph to ``path``; its parameter inputs are called ``names`` (as :func:`export_adapt`)."""
    return _to_onnx(predict_program(inner, spec), [*PREDICT_INPUTS, *(names or adapted_names(inner))],
                    list(PREDICT_OUTPUTS), path)


def _to_onnx(program: torch.export.ExportedProgram, inputs: list[str], outputs: list[str],
             path: str | os.PathLike) -> onnx.ModelProto:
    onnx_program = torch.onnx.export(program, input_names=inputs, output_names=outputs, opset_version=OPSET,
                                     dynamo=True, verbose=False)
    model = rewrite_slow_operators(strip_annotations(onnx_program.model_proto))
    onnx.checker.check_model(model, full_check=True)
    Path(path).write_bytes(model.SerializeToString())
    return model


def strip_annotations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop what runtimes never read: the exporter's per-node stack traces and scopes (~90% of a raw file),
    node names and intermediate shape annotations (runtimes infer shapes); about 12% of the adapt graph."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.name = ""
    del model.graph.value_info[:]
    return model
