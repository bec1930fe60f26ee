"""A TFLite MobileNet V1 read into the backbone ``mobilenet_v1_imagenet``: its weights dequantised, its folded batch
norm kept as biases.

The file is read with the ``tflite`` package (the flatbuffer bindings of TFLite's own schema, Apache-2.0), not by a
parser of ours. The graph must be MobileNet V1 at width 1.0: a stride-2 3x3 ``CONV_2D``, 13 pairs of
``DEPTHWISE_CONV_2D`` + 1x1 ``CONV_2D`` (strides as in :data:`~edgeadapt.sdk.networks.MOBILENET_V1_LAYOUTS`),
all with SAME padding and a fused ReLU6, then one ``AVERAGE_POOL_2D`` (and optionally a ``RESHAPE`` or
``SQUEEZE``): anything else is a CheckpointError naming the file and the operator.

Quantised tensors are dequantised as ``scale * (q - zero_point)``, per channel where the file has per-channel
scales; the int32 biases by their own scales. TFLite folds batch norm into each convolution and its bias, so each
of our batch-norm layers is made an exact identity plus that bias (weight 1, running mean 0, running variance
``1 - eps``, so that ``var + eps`` is 1 in float32). The input's quantisation says what pixels the network takes:
``real = scale * (q - zero_point)`` for uint8 pixels ``q``, i.e. the input description's ``value_range``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from edgeadapt.runtime.format.extras import require
from edgeadapt.runtime.format.files import atomic_path

from ..errors import CheckpointError, ConfigError
from ..networks import MOBILENET_V1_LAYOUTS, MobileNetV1

BACKBONE = "mobilenet_v1_imagenet"  # the registered backbone (edgeadapt.sdk.backbones) these weights fit
MAX_BYTES = 1 << 30  # a MobileNet V1 file is 4 MB (uint8) to 17 MB (float32)
_QUANTISED = {"UINT8": (np.uint8, 0, 255), "INT8": (np.int8, -128, 127), "INT32": (np.int32, None, None)}
_DTYPES = {"FLOAT32": np.float32, **{name: dtype for name, (dtype, _, _) in _QUANTISED.items()}}
_PARSE_ERRORS = (struct.error, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError, KeyError)


@dataclass(frozen=True)
class TFLiteImport:
    """What :func:`read_tflite` found.

    Args:
        state_dict: the ``features.*`` tensors of :data:`BACKBONE` (float32; batch-norm buffers included).
        value_range: ``(low, high)`` of the pixels the network takes, from the input's quantisation (uint8 0 and
            255 as real values); None for a float input, whose file does not say.
        input_shape: the file's input, ``(height, width, channels)``.
    """

    state_dict: dict[str, torch.Tensor]
    value_range: tuple[float, float] | None
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    scales: np.ndarray  # empty when not quantised
    zero_points: np.ndarray
    axis: int
    data: bytes


@dataclass(frozen=True)
class _Op:
    index: int
    kind: str
    inputs: tuple[int, ...]
    options: dict[str, Any]


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; CheckpointError when it is missing, unreadable, too large or not a TFLite flatbuffer."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes is too large for a MobileNet V1 .tflite file")
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the TFLite file ({e.strerror or e})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise CheckpointError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    return data


def _enum_names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _tensor(lib: Any, model: Any, graph: Any, index: int) -> _Tensor:
    """Tensor ``index`` of ``graph`` as plain data (its buffer's bytes, its quantisation)."""
    t = graph.Tensors(index)
    q = t.Quantization()
    scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0, np.float32)
    zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0, np.int64)
    data = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() < model.BuffersLength() else 0
    return _Tensor(t.Name().decode(), _enum_names(lib.TensorType).get(t.Type(), f"type {t.Type()}"),
                   tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                   np.asarray(scales, np.float64), np.asarray(zeros, np.int64),
                   q.QuantizedDimension() if q is not None else 0,
                   bytes(data) if isinstance(data, np.ndarray) else b"")


def _options(lib: Any, kind: str, table: Any) -> dict[str, Any]:
    """The options of a convolution or pooling operator as a dict (empty for other operators)."""
    classes = {"CONV_2D": lib.Conv2DOptions, "DEPTHWISE_CONV_2D": lib.DepthwiseConv2DOptions,
               "AVERAGE_POOL_2D": lib.Pool2DOptions}
    if kind not in classes or table is None:
        return {}
    o = classes[kind]()
    o.Init(table.Bytes, table.Pos)
    found = {"padding": _enum_names(lib.Padding).get(o.Padding()), "stride": (o.StrideH(), o.StrideW()),
             "activation": _enum_names(lib.ActivationFunctionType).get(o.FusedActivationFunction())}
    if kind == "AVERAGE_POOL_2D":
        return {**found, "filter": (o.FilterHeight(), o.FilterWidth())}
    multiplier = {"depth_multiplier": o.DepthMultiplier()} if kind == "DEPTHWISE_CONV_2D" else {}
    return {**found, "dilation": (o.DilationHFactor(), o.DilationWFactor()), **multiplier}


def _parse(data: bytes, path: Path) -> tuple[list[_Op], dict[int, _Tensor], int]:
    """The operators, the tensors and the input index of the file's one subgraph; CheckpointError when the
    flatbuffer is corrupt or truncated."""
    lib = require("tflite", "import", "reading a .tflite file")
    names = require("tflite.utils", "import", "reading a .tflite file").BUILTIN_OPCODE2NAME
    try:
        model = lib.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() != 1:
            raise CheckpointError(f"{path}: has {model.SubgraphsLength()} subgraphs; a MobileNet V1 has one")
        graph = model.Subgraphs(0)
        codes = [model.OperatorCodes(i).BuiltinCode() for i in range(model.OperatorCodesLength())]
        ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            kind = names.get(codes[op.OpcodeIndex()], f"operator {codes[op.OpcodeIndex()]}")
            ops.append(_Op(i, kind, tuple(int(t) for t in op.InputsAsNumpy()),
                           _options(lib, kind, op.BuiltinOptions())))
        used = {t for op in ops for t in op.inputs if t >= 0} | {int(graph.Inputs(0))}
        return ops, {t: _tensor(lib, model, graph, t) for t in used}, int(graph.Inputs(0))
    except CheckpointError:
        raise
    except _PARSE_ERRORS as e:
        raise CheckpointError(f"{path}: corrupt or truncated TFLite file ({len(data)} bytes; {e})") from None


def _dequantise(t: _Tensor, path: Path) -> np.ndarray:
    """``scale * (q - zero_point)`` (per channel along ``t.axis`` when there are several scales), float32."""
    if t.dtype not in _DTYPES:
        raise CheckpointError(f"{path}: tensor {t.name!r} is {t.dtype}; only float32, uint8, int8 and int32 are read")
    count = int(np.prod(t.shape))
    values = np.frombuffer(t.data, _DTYPES[t.dtype])
    if values.size != count:
        raise CheckpointError(f"{path}: tensor {t.name!r} holds {values.size} values, its shape {t.shape} needs "
                              f"{count}")
    values = values.reshape(t.shape)
    if t.dtype == "FLOAT32":
        return values.astype(np.float32)
    channels = t.shape[t.axis] if 0 <= t.axis < len(t.shape) else 1
    if len(t.scales) not in (1, channels) or len(t.zero_points) not in (0, 1, len(t.scales)):
        raise CheckpointError(f"{path}: tensor {t.name!r} ({t.dtype}) has {len(t.scales)} scales and "
                              f"{len(t.zero_points)} zero points for shape {t.shape}")
    view = [1] * len(t.shape)
    if len(t.scales) > 1:
        view[t.axis] = -1
    zero = np.broadcast_to(t.zero_points if len(t.zero_points) else np.zeros(1, np.int64), t.scales.shape)
    real = t.scales.reshape(view) * (values.astype(np.float64) - zero.reshape(view))
    return real.astype(np.float32)


def _expected_layers() -> list[tuple[str, int, str, str]]:
    """``(operator, stride, convolution, its batch norm)`` of each convolution of MobileNet V1 in graph order, the
    last two named as in ``features``: the stem is ``features.0``, block ``i`` is ``features.i`` (depthwise
    convolution at 0, pointwise at 3, each followed by its batch norm)."""
    layers = [("CONV_2D", 2, "features.0.0", "features.0.1")]
    for block, (_, stride) in enumerate(MOBILENET_V1_LAYOUTS["full"], start=1):
        layers += [("DEPTHWISE_CONV_2D", stride, f"features.{block}.0", f"features.{block}.1"),
                   ("CONV_2D", 1, f"features.{block}.3", f"features.{block}.4")]
    return layers


def _check_op(op: _Op, kind: str, stride: int, path: Path) -> None:
    """CheckpointError unless ``op`` is the convolution MobileNet V1 has here."""
    where = f"{path}: operator {op.index} ({op.kind})"
    if op.kind != kind:
        raise CheckpointError(f"{where}: expected {kind} here; this file is not MobileNet V1 (width 1.0)")
    o = op.options
    if o.get("padding") != "SAME" or o.get("activation") != "RELU6" or o.get("dilation") != (1, 1):
        raise CheckpointError(f"{where}: needs SAME padding, a fused RELU6 and no dilation; has padding "
                              f"{o.get('padding')}, activation {o.get('activation')}, dilation {o.get('dilation')}")
    if o.get("stride") != (stride, stride) or o.get("depth_multiplier", 1) != 1:
        raise CheckpointError(f"{where}: stride {o.get('stride')} (depth multiplier {o.get('depth_multiplier', 1)})"
                              f"; MobileNet V1 has stride {stride} here (and depth multiplier 1)")
    if len(op.inputs) != 3 or op.inputs[2] < 0:
        raise CheckpointError(f"{where}: has no bias; TFLite's MobileNet V1 folds batch norm into one")


def _check_tail(ops: list[_Op], path: Path) -> None:
    """CheckpointError unless the operators after the convolutions are a global average pooling (then a reshape)."""
    tail = [op.kind for op in ops]
    if not tail or tail[0] != "AVERAGE_POOL_2D" or any(k not in ("RESHAPE", "SQUEEZE") for k in tail[1:]):
        raise CheckpointError(f"{path}: after the 27 convolutions MobileNet V1 has AVERAGE_POOL_2D (then RESHAPE or "
                              f"SQUEEZE), not {tail or 'nothing'}: an unsupported graph")
    if ops[0].options.get("padding") != "VALID":
        raise CheckpointError(f"{path}: the final AVERAGE_POOL_2D pads; a global average pooling does not")


def _layer_weights(op: _Op, tensors: dict[int, _Tensor], conv: str, bn: str, path: Path) -> dict[str, torch.Tensor]:
    """The convolution weight (TFLite's OHWI, or 1HWC for a depthwise one, as PyTorch's OIHW) and the identity
    batch norm carrying the folded bias, named as in ``features``."""
    weight = _dequantise(tensors[op.inputs[1]], path)
    if weight.ndim != 4:
        raise CheckpointError(f"{path}: operator {op.index} ({op.kind}) has a weight of shape {weight.shape}")
    order = (3, 0, 1, 2) if op.kind == "DEPTHWISE_CONV_2D" else (0, 3, 1, 2)
    bias = torch.from_numpy(_dequantise(tensors[op.inputs[2]], path).reshape(-1).copy())
    eps = torch.nn.BatchNorm2d(1).eps
    return {f"{conv}.weight": torch.from_numpy(np.ascontiguousarray(weight.transpose(order))),
            f"{bn}.weight": torch.ones_like(bias), f"{bn}.bias": bias,
            f"{bn}.running_mean": torch.zeros_like(bias), f"{bn}.running_var": torch.full_like(bias, 1 - eps),
            f"{bn}.num_batches_tracked": torch.tensor(0)}


def _value_range(t: _Tensor, path: Path) -> tuple[float, float] | None:
    """The real values of pixels 0 and 255 by the input's quantisation (an int8 input takes ``pixel - 128``)."""
    if t.dtype == "FLOAT32":
        return None
    if t.dtype not in ("UINT8", "INT8") or len(t.scales) != 1:
        raise CheckpointError(f"{path}: input {t.name!r} is {t.dtype} with {len(t.scales)} scales; a MobileNet V1 "
                              "takes uint8 or int8 pixels with one scale, or float32")
    _, low, high = _QUANTISED[t.dtype]
    zero = int(t.zero_points[0]) if len(t.zero_points) else 0
    return float(t.scales[0] * (low - zero)), float(t.scales[0] * (high - zero))


def _fit(weights: dict[str, torch.Tensor], path: Path) -> None:
    """CheckpointError unless ``weights`` are exactly the features of :data:`BACKBONE`, tensor by tensor."""
    own = MobileNetV1(ways=1, width=32, layout="full", padding="same").state_dict()
    own = {k: v for k, v in own.items() if k.startswith("features.")}
    wrong = [f"{k} {tuple(weights[k].shape)} (needs {tuple(v.shape)})" for k, v in own.items()
             if k in weights and weights[k].shape != v.shape]
    if wrong or set(own) != set(weights):
        odd = wrong[:2] or sorted(set(own) ^ set(weights))[:3]
        raise CheckpointError(f"{path}: not MobileNet V1 at width 1.0: {odd}")


def read_tflite(path: str | os.PathLike) -> TFLiteImport:
    """Read the TFLite MobileNet V1 at ``path`` into the ``features`` of :data:`BACKBONE`, with the pixel range
    its input quantisation states.

    Raises CheckpointError (one line naming the file and what is wrong) for a missing, unreadable, corrupt or
    truncated file, one that is not TFLite, or a graph other than MobileNet V1 at width 1.0; MissingExtraError
    (install the ``import`` extra) when the ``tflite`` package is not.
    """
    path = Path(path)
    ops, tensors, input_index = _parse(_read_bytes(path), path)
    layers = _expected_layers()
    if len(ops) < len(layers):
        raise CheckpointError(f"{path}: {len(ops)} operators; MobileNet V1 has {len(layers)} convolutions and a "
                              "pooling")
    weights: dict[str, torch.Tensor] = {}
    for op, (kind, stride, conv, bn) in zip(ops, layers):
        _check_op(op, kind, stride, path)
        weights.update(_layer_weights(op, tensors, conv, bn, path))
    _check_tail(ops[len(layers):], path)
    _fit(weights, path)
    source = tensors[input_index]
    return TFLiteImport(weights, _value_range(source, path), source.shape[1:])


def import_tflite(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of the ``features`` of :data:`BACKBONE` read from the TFLite MobileNet V1 at ``path``
    (dequantised, float32); see :func:`read_tflite` for what it checks and raises."""
    return read_tflite(path).state_dict


def save_imported(path: str | os.PathLike, weights: dict[str, torch.Tensor]) -> Path:
    """Write ``weights`` (e.g. :func:`import_tflite`'s) to the ``.safetensors`` file ``path`` atomically (a crash
    leaves any previous file whole), for ``edgeadapt pretrain --weights``; returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"{path}: imported weights are written as .safetensors (what --weights reads)")
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp))
    return path
