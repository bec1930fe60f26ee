"""Operators onnxruntime runs slowly, rewritten as equivalent standard operators it runs fast.

onnxruntime's ``Elu`` kernel computes one element at a time: on the Omniglot Conv4's embed graph it took more
time than the four convolutions in int8 (2.3 of 4.3 ms for 75 images, one thread), while ``Exp``, ``Min``,
``Relu`` and ``Sum`` are vectorised. ``elu(x) = relu(x) + alpha * (exp(min(x, 0)) - 1)`` in those operators is the
same function (within a rounding of ``alpha``: for ``x`` near 0, ``exp(x) - 1`` is a difference;
tests/test_onnx_rewrites.py) and every engine runs them (onnxruntime from
1.18, -web, -node, the ORT format). The rewritten nodes are named with :data:`REWRITTEN` so that int8
quantisation leaves them float (:mod:`~edgeadapt.export.quantize`), as it left the ``Elu`` they replace.

:data:`REWRITES` maps an operator type to the function that rewrites one such node; the graph writer applies it
to every graph it writes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

REWRITTEN = "rewritten/"  # prefix of the names of the nodes a rewrite made
Rewrite = Callable[[onnx.NodeProto, str], tuple[list[onnx.NodeProto], list[onnx.TensorProto]]]


def _elu(node: onnx.NodeProto, prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``Elu(x)`` as ``Sum(Relu(x), alpha * Exp(Min(x, 0)), -alpha)``."""
    alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
    x, y = node.input[0], node.output[0]
    zero, minus_alpha = prefix + "zero", prefix + "minus_alpha"
    constants = [numpy_helper.from_array(np.array(0.0, np.float32), zero),
                 numpy_helper.from_array(np.array(-alpha, np.float32), minus_alpha)]
    nodes = [helper.make_node("Min", [x, zero], [prefix + "negative"], name=prefix + "min"),
             helper.make_node("Exp", [prefix + "negative"], [prefix + "exp"], name=prefix + "exp")]
    exponential = prefix + "exp"
    if alpha != 1.0:
        alpha_name = prefix + "alpha"
        constants.append(numpy_helper.from_array(np.array(alpha, np.float32), alpha_name))
        nodes.append(helper.make_node("Mul", [exponential, alpha_name], [prefix + "scaled"], name=prefix + "mul"))
        exponential = prefix + "scaled"
    nodes += [helper.make_node("Relu", [x], [prefix + "positive"], name=prefix + "relu"),
              helper.make_node("Sum", [prefix + "positive", exponential, minus_alpha], [y], name=prefix + "sum")]
    return nodes, constants


REWRITES: dict[str, Rewrite] = {"Elu": _elu}


def rewrite_slow_operators(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every node of a type in :data:`REWRITES` replaced by its rewrite, in place; float inputs only
    (the rewrites' constants are float32)."""
    float_tensors = _float_tensors(model)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    for index, node in enumerate(nodes):
        rewrite = REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rewrite is None or node.input[0] not in float_tensors:
            model.graph.node.append(node)
            continue
        replacement, constants = rewrite(node, f"{REWRITTEN}{node.op_type.lower()}{index}/")
        model.graph.node.extend(replacement)
        model.graph.initializer.extend(constants)
    return model


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of ``model`` (shape inference run on a copy)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return ({v.name for v in typed if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
            | {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT})
