"""The ATen decomposition table every exported graph is traced with: a gradient step in stock ONNX operators.

Two traps are handled here: ``aten.convolution_backward`` has no ONNX translation, so it is
rewritten as a transposed convolution (input gradient) and a convolution (weight gradient);
and the exporter's own ``nll_loss_backward`` is wrong by a factor 1/N unless PyTorch's core
ATen decompositions run first, so they always do. ExecuTorch adds its own rewrites on top
(:mod:`~edgeadapt.export.xnnpack_decompositions`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch._decomp import core_aten_decompositions

from .errors import UnsupportedExportError

aten = torch.ops.aten
Decompositions = dict[torch._ops.OperatorBase, Callable]


def convolution_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: list[int] | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    transposed: bool,
    output_padding: list[int],
    groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of a 2-D convolution (input, weight, bias) from forward-only convolution operators."""
    check_plain_conv(transposed, groups, dilation, weight)
    grad_input = grad_weight = grad_bias = None
    kernel = weight.shape[2:]
    if output_mask[0]:
        extra = [input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + kernel[i])
                 for i in range(2)]
        grad_input = F.conv_transpose2d(grad_output, weight, stride=stride, padding=padding, output_padding=extra)
    if output_mask[1]:
        # Correlate inputs with output gradients: batch becomes the reduction axis, stride becomes dilation.
        full = F.conv2d(input.transpose(0, 1), grad_output.transpose(0, 1), padding=padding, dilation=stride)
        grad_weight = full.transpose(0, 1)[:, :, : kernel[0], : kernel[1]]
    if output_mask[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias


def export_decompositions() -> Decompositions:
    """Core ATen decompositions plus :func:`convolution_backward`: the table used for every exported graph.

    Group norm's gradient needs no entry: under ``torch.func.grad`` autograd uses its twice-differentiable
    formula, made of ordinary operators, exactly as PyTorch's own inner loop does.
    """
    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = convolution_backward
    return table


def check_plain_conv(transposed: bool, groups: int, dilation: list[int], weight: torch.Tensor) -> None:
    if transposed or groups != 1 or any(d != 1 for d in dilation) or weight.dim() != 4:
        raise UnsupportedExportError("only ungrouped, undilated 2-D convolutions can be exported with gradients")
