"""The ATen decomposition table every exported graph is traced with: a gradient step in stock ONNX operators.

Three traps are handled here: ``aten.convolution_backward`` has no ONNX translation, so it is
rewritten as a transposed convolution (input gradient) and a convolution (weight gradient), both with the
convolution's groups (depthwise ones included); ``max_pool2d_with_indices_backward`` has none either, so it is
a scatter-add at the forward pass's indices;
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
    """Gradients of a 2-D convolution (input, weight, bias), grouped or not (depthwise: ``groups`` = channels),
    from forward-only convolution operators with the same ``groups``."""
    check_exportable_conv(transposed, dilation, weight)
    grad_input = grad_weight = grad_bias = None
    kernel = weight.shape[2:]
    if output_mask[0]:
        extra = [input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + kernel[i])
                 for i in range(2)]
        grad_input = F.conv_transpose2d(grad_output, weight, stride=stride, padding=padding, output_padding=extra,
                                        groups=groups)
    if output_mask[1]:
        grad_weight = _weight_gradient(grad_output, input, kernel, stride, padding, groups)
    if output_mask[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias


def _weight_gradient(grad_output: torch.Tensor, input: torch.Tensor, kernel: torch.Size, stride: list[int],
                     padding: list[int], groups: int) -> torch.Tensor:
    """Correlate inputs with output gradients: the batch becomes the reduction axis, the stride the dilation.

    Group ``g``'s inputs ``(N, Cin/G, H, W)`` become the channels ``g*N .. g*N+N-1`` of a ``(Cin/G, G*N, H, W)``
    image and the output gradients ``(Cout, N, H', W')`` its kernels, so one convolution with ``groups`` correlates
    each group's inputs with its own outputs only: ``(Cin/G, Cout, >= kh, >= kw)``, transposed and cropped."""
    n, c_in = input.shape[:2]
    per_group = c_in // groups
    images = input.reshape(n, groups, per_group, *input.shape[2:]).permute(2, 1, 0, 3, 4)
    images = images.reshape(per_group, groups * n, *input.shape[2:])
    full = F.conv2d(images, grad_output.transpose(0, 1), padding=padding, dilation=stride, groups=groups)
    return full.transpose(0, 1)[:, :, : kernel[0], : kernel[1]]


def max_pool_backward(grad_output: torch.Tensor, input: torch.Tensor, kernel_size: list[int], stride: list[int],
                      padding: list[int], dilation: list[int], ceil_mode: bool, indices: torch.Tensor) -> torch.Tensor:
    """The input gradient of 2-D max pooling: each output's gradient added at the position its forward pass chose
    (``indices``, per plane), so ties go where autograd sends them; one ``scatter_add`` (ONNX ScatterElements)."""
    side = input.shape[-2] * input.shape[-1]
    planes = grad_output.reshape(-1, grad_output.shape[-2] * grad_output.shape[-1])
    grad = planes.new_zeros(planes.shape[0], side).scatter_add(1, indices.reshape(planes.shape), planes)
    return grad.reshape(input.shape)


def export_decompositions() -> Decompositions:
    """Core ATen decompositions plus :func:`convolution_backward` and :func:`max_pool_backward`: the table used for
    every exported graph.

    Group norm's gradient needs no entry: under ``torch.func.grad`` autograd uses its twice-differentiable
    formula, made of ordinary operators, exactly as PyTorch's own inner loop does.
    """
    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = convolution_backward
    table[aten.max_pool2d_with_indices_backward.default] = max_pool_backward
    return table


def check_exportable_conv(transposed: bool, dilation: list[int], weight: torch.Tensor) -> None:
    """UnsupportedExportError unless the convolution is a 2-D, undilated, not transposed one (grouped or not)."""
    if transposed or any(d != 1 for d in dilation) or weight.dim() != 4:
        raise UnsupportedExportError("only undilated, not transposed 2-D convolutions (grouped or not) can be "
                                     f"exported with gradients (got dilation {list(dilation)}, transposed "
                                     f"{transposed}, a {weight.dim() - 2}-D kernel)")
