"""ATen decompositions for ExecuTorch: the gradient step in the operators XNNPACK delegates.

Convolutions whose weights are graph inputs (everything the inner loop adapts) would run on
ExecuTorch's portable reference kernels, since XNNPACK only delegates convolutions with constant
weights. :func:`matmul_decompositions` therefore rewrites every convolution and its gradients as
im2col (a depthwise convolution with constant one-hot kernels) plus one matrix product (a grouped or
depthwise convolution: one batched product over its groups), both of which XNNPACK runs, and col2im
(padding and sums of stride phases); group normalisation, ELU's
gradient, sums, means and scalar products get the forms XNNPACK delegates (ELU itself is delegated as
it is: :mod:`~edgeadapt.export.xnnpack_partitioners`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch._decomp import core_aten_decompositions

from .errors import UnsupportedExportError

from .decompositions import Decompositions, check_exportable_conv, export_decompositions

aten = torch.ops.aten


_ONE_HOT_TAPS: dict[tuple[int, int, int, torch.dtype], torch.Tensor] = {}


def _one_hot_taps(channels: int, kh: int, kw: int, dtype: torch.dtype) -> torch.Tensor:
    """Depthwise kernels ``(channels*kh*kw, 1, kh, kw)`` whose output ``c*kh*kw + t`` copies tap ``t`` of channel ``c``.

    Built from numpy so that, inside a traced graph, it is a constant (XNNPACK only delegates
    convolutions whose weights are constants) rather than traced factory operators; cached, so that
    :func:`convolution_as_matmul` recognises it and leaves that convolution alone.
    """
    key = (channels, kh, kw, dtype)
    if key not in _ONE_HOT_TAPS:
        taps = np.eye(kh * kw, dtype=np.float64 if dtype == torch.float64 else np.float32).reshape(kh * kw, 1, kh, kw)
        _ONE_HOT_TAPS[key] = torch.from_numpy(np.tile(taps, (channels, 1, 1, 1)))
    return _ONE_HOT_TAPS[key]


def _im2col(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
            pad: tuple[int, int, int, int]) -> tuple[torch.Tensor, int, int]:
    """``(N*Ho*Wo, C*kh*kw)`` patches of ``x`` padded by ``pad`` = (left, right, top, bottom), and Ho, Wo.

    Extracted by a depthwise convolution with one-hot kernels (exact: one product by 1.0, the rest by
    0.0), which XNNPACK runs as one fused operator, instead of strided slices and copies.
    """
    n, c = x.shape[:2]
    (kh, kw), (left, right, top, bottom) = kernel, pad
    if left != right or top != bottom:
        raise UnsupportedExportError("only symmetric padding can be exported with gradients")
    c, kh, kw = int(c), int(kh), int(kw)  # constants, also when tracing with symbolic shapes
    patches = F.conv2d(x, _one_hot_taps(c, kh, kw, x.dtype), None, stride, (top, left), 1, c)
    ho, wo = patches.shape[2], patches.shape[3]
    return patches.permute(0, 2, 3, 1).reshape(n * ho * wo, c * kh * kw), ho, wo


def _col2im(cols: torch.Tensor, shape: torch.Size, kernel: tuple[int, int], stride: tuple[int, int],
            pad: tuple[int, int, int, int]) -> torch.Tensor:
    """The adjoint of :func:`_im2col`: sums patch gradients ``(N*Ho*Wo, kh*kw*C)`` back into an image of ``shape``.

    Columns are tap-major (``t*C + c``, unlike im2col's ``c*kh*kw + t``), so that each tap is a slice of
    contiguous channel runs rather than a gather of single values 9 apart (a quarter of a step's time).
    """
    n, c, h, w = shape
    (kh, kw), (sh, sw) = kernel, stride
    hp, wp = h + pad[2] + pad[3], w + pad[0] + pad[1]
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    hq, wq = max(-(-hp // sh), (kh - 1) // sh + ho), max(-(-wp // sw), (kw - 1) // sw + wo)
    cols = cols.reshape(n, ho, wo, kh * kw, c)
    phases: list[torch.Tensor | None] = [None] * (sh * sw)
    for i in range(kh):
        for j in range(kw):
            p, a, b = (i % sh) * sw + j % sw, i // sh, j // sw
            tap = cols[:, :, :, i * kw + j: i * kw + j + 1].reshape(n, ho, wo, c)  # a slice: XNNPACK has no select
            tap = F.pad(tap, (0, 0, b, wq - wo - b, a, hq - ho - a))
            phases[p] = tap if phases[p] is None else phases[p] + tap  # no zero images built per call
    image = torch.stack([cols.new_zeros(n, hq, wq, c) if p is None else p for p in phases], dim=1)
    image = image.reshape(n, sh, sw, hq, wq, c).permute(0, 5, 3, 1, 4, 2)
    image = image.reshape(n, c, hq * sh, wq * sw)
    return image[:, :, pad[2]: pad[2] + h, pad[0]: pad[0] + w]


def _by_group(rows: torch.Tensor, groups: int) -> torch.Tensor:
    """``(M, G*r)`` rows as ``(G, M, r)``: each group's columns, a batch of matrices for one batched product."""
    return rows.reshape(rows.shape[0], groups, -1).permute(1, 0, 2)


def _conv_matmul(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                 pad: tuple[int, int, int, int], groups: int = 1) -> torch.Tensor:
    """A 2-D convolution (no bias) as im2col and one matrix product (one batched product over ``groups``)."""
    cols, ho, wo = _im2col(x, (weight.shape[2], weight.shape[3]), stride, pad)
    if groups == 1:
        out = cols @ weight.reshape(weight.shape[0], -1).t()
    else:  # group g's patches (columns g*k*kh*kw ..) times its filters: (G, M, k*kh*kw) @ (G, k*kh*kw, Cout/G)
        out = _by_group(cols, groups) @ weight.reshape(groups, weight.shape[0] // groups, -1).transpose(1, 2)
        out = out.permute(1, 0, 2).reshape(cols.shape[0], weight.shape[0])
    return out.reshape(x.shape[0], ho, wo, weight.shape[0]).permute(0, 3, 1, 2)


def convolution_as_matmul(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          stride: list[int], padding: list[int], dilation: list[int], transposed: bool,
                          output_padding: list[int], groups: int) -> torch.Tensor:
    """``aten.convolution`` as im2col + matrix product, grouped ones (depthwise included) as a batched product.

    im2col's own convolution is left as it is (``NotImplemented`` tells the tracer to keep the operator).
    """
    if not transposed and any(weight is taps for taps in _ONE_HOT_TAPS.values()):
        return NotImplemented
    check_exportable_conv(transposed, dilation, weight)
    out = _conv_matmul(input, weight, tuple(stride), (padding[1], padding[1], padding[0], padding[0]), groups)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def convolution_backward_as_matmul(
    grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, bias_sizes: list[int] | None,
    stride: list[int], padding: list[int], dilation: list[int], transposed: bool, output_padding: list[int],
    groups: int, output_mask: list[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of a 2-D convolution from im2col + matrix products (see :func:`convolution_backward`); a grouped
    convolution's are batched products over its groups."""
    check_exportable_conv(transposed, dilation, weight)
    grad_input = grad_weight = grad_bias = None
    c_out, c_in, kh, kw = weight.shape
    pad = (padding[1], padding[1], padding[0], padding[0])
    grad_rows = grad_output.permute(0, 2, 3, 1).reshape(-1, c_out)
    if output_mask[0]:
        tap_major = weight.permute(0, 2, 3, 1)  # (Cout, kh, kw, Cin/G): col2im takes columns t*Cin + c
        if groups == 1:
            cols = grad_rows @ tap_major.reshape(c_out, -1)
        else:
            per_group = _by_group(grad_rows, groups) @ tap_major.reshape(groups, c_out // groups, -1)
            cols = per_group.reshape(groups, -1, kh * kw, c_in).permute(1, 2, 0, 3).reshape(-1, kh * kw * groups * c_in)
        grad_input = _col2im(cols, input.shape, (kh, kw), tuple(stride), pad)
    if output_mask[1]:
        cols, _, _ = _im2col(input, (kh, kw), tuple(stride), pad)
        if groups == 1:
            grad_weight = (grad_rows.t() @ cols).reshape(c_out, c_in, kh, kw)
        else:
            grad_weight = (_by_group(grad_rows, groups).transpose(1, 2) @ _by_group(cols, groups))
            grad_weight = grad_weight.reshape(c_out, c_in, kh, kw)
    if output_mask[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias


def group_norm_two_pass(input: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, n: int,
                        c: int, hxw: int, group: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``aten.native_group_norm`` with a corrected mean and the variance of centred values.

    ExecuTorch 1.5's portable kernel computes E[x^2] - E[x]^2, which cancels catastrophically when
    activations have a large mean: an error of 3.4 where PyTorch's is 1e-3 (mean 100, std 0.01), enough
    to change an adaptation's outcome. Every statistic is a mean over each channel's positions (XNNPACK's
    global average pooling, native in its channels-last layout, so the activations are never transposed)
    followed by a small mean over the channels of a group.
    """
    x = input.reshape(n, c, hxw, 1) if input.dim() != 4 else input
    rough = _group_mean(x, group)
    mean = rough + _group_mean(x - rough, group)  # corrects the rounding of a one-pass sum
    centred = x - mean
    rstd = torch.rsqrt(_group_mean(centred * centred, group) + eps)
    out = centred * rstd
    if weight is not None:
        out = out * weight.reshape(1, c, 1, 1)
    if bias is not None:
        out = out + bias.reshape(1, c, 1, 1)
    return out.reshape(input.shape), _per_group(mean, group), _per_group(rstd, group)


def _group_mean(x: torch.Tensor, group: int) -> torch.Tensor:
    """The mean of ``x`` (N, C, H, W) over each group's channels and positions, repeated per channel: (N, C, 1, 1).

    Channels hold equal numbers of positions, so the mean of per-channel means is the group's mean."""
    n, c = x.shape[:2]
    per_channel = x.mean((2, 3), keepdim=True)
    per_group = per_channel.reshape(n, group, c // group, 1).mean((2, 3), keepdim=True)
    return per_group if group == 1 else per_group.expand(n, group, c // group, 1).reshape(n, c, 1, 1)


def _per_group(per_channel: torch.Tensor, group: int) -> torch.Tensor:
    """(N, C, 1, 1) statistics repeated per channel, as native_group_norm returns them: (N, group)."""
    n = per_channel.shape[0]
    return per_channel.reshape(n, group, -1)[:, :, 0]


def relu_backward_as_clamp(grad_output: torch.Tensor, self: torch.Tensor, threshold: float) -> torch.Tensor:
    """``aten.threshold_backward`` (ReLU's gradient) as ``grad * ceil(clamp(self - threshold, 0, 1))``.

    The same values as the core decomposition's ``where(self <= threshold, 0, grad)`` (IEEE subtraction
    keeps the sign of ``self - threshold``), from operators XNNPACK runs instead of portable where/le.
    """
    shifted = self if threshold == 0 else self - threshold
    return grad_output * torch.ceil(torch.clamp(shifted, 0.0, 1.0))


def elu_backward_as_clamp(grad_output: torch.Tensor, alpha: float, scale: float, input_scale: float,
                          is_result: bool, self_or_result: torch.Tensor) -> torch.Tensor:
    """``aten.elu_backward`` for the plain ELU (alpha = scale = input_scale = 1) from XNNPACK's operators:
    ``grad * exp(min(x, 0))``, or ``grad * (min(y, 0) + 1)`` from the result; the same values as the core
    decomposition's ``where``. Other coefficients take the core decomposition."""
    if (alpha, scale, input_scale) != (1, 1, 1):
        return core_aten_decompositions()[aten.elu_backward.default](
            grad_output, alpha, scale, input_scale, is_result, self_or_result)
    negative_part = torch.clamp(self_or_result, max=0.0)
    slope = negative_part + 1.0 if is_result else torch.exp(negative_part)
    return grad_output * slope


def _reduced_dims(x: torch.Tensor, dim: list[int] | None) -> list[int]:
    return sorted({d % x.dim() for d in dim}) if dim else list(range(x.dim()))


def mean_as_pooling(self: torch.Tensor, dim: list[int] | None, keepdim: bool = False, *,
                    dtype: torch.dtype | None = None) -> torch.Tensor:
    """``aten.mean.dim`` as a mean over the last two axes of a 4-D tensor ``(1, kept, reduced, 1)``, the one form
    XNNPACK delegates (global average pooling); the reduced axes are moved last first."""
    if dtype is not None or not self.is_floating_point() or self.dim() == 0:
        return NotImplemented
    dims = _reduced_dims(self, dim)
    if self.dim() == 4 and dims == [2, 3] and keepdim:
        return NotImplemented  # already the delegated form
    kept = [d for d in range(self.dim()) if d not in dims]
    order = kept + dims
    moved = self if order == sorted(order) else self.permute(order)
    reduced = math.prod(self.shape[d] for d in dims)
    out = moved.reshape(1, -1, reduced, 1).mean((2, 3), keepdim=True)
    shape = [1 if d in dims else self.shape[d] for d in range(self.dim())] if keepdim else [self.shape[d] for d in kept]
    return out.reshape(shape)


def sum_as_pooling(self: torch.Tensor, dim: list[int] | None = None, keepdim: bool = False, *,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """``aten.sum`` as :func:`mean_as_pooling` times the number of summed values (ExecuTorch 1.5's XNNPACK
    partitioner has no sum; the portable kernel cost more than the matrix products of some layers)."""
    if dtype is not None or not self.is_floating_point() or self.dim() == 0:
        return NotImplemented
    count = math.prod(self.shape[d] for d in _reduced_dims(self, dim))
    return mean_as_pooling(self, dim, keepdim) * float(count)  # a float: an int constant would be cast per call


def mul_scalar_as_tensor(self: torch.Tensor, other: float) -> torch.Tensor:
    """``aten.mul.Scalar`` as the tensor product with a constant, which XNNPACK delegates."""
    return self * other  # traced as aten.mul.Tensor with a wrapped scalar


def matmul_decompositions(convolution_weights_are_inputs: bool = True) -> Decompositions:
    """:func:`export_decompositions` for ExecuTorch: group normalisation in two passes, and ELU's gradient, sums,
    means and scalar products in the forms XNNPACK delegates; every convolution and its gradients as im2col +
    matrix products when ``convolution_weights_are_inputs`` (they adapt). Otherwise (head-only adaptation) the
    convolutions keep their constant weights, which XNNPACK's own, faster convolution takes."""
    table = export_decompositions()
    if convolution_weights_are_inputs:
        table[aten.convolution.default] = convolution_as_matmul
        table[aten.convolution_backward.default] = convolution_backward_as_matmul
    table[aten.native_group_norm.default] = group_norm_two_pass
    table[aten.threshold_backward.default] = relu_backward_as_clamp
    table[aten.elu_backward.default] = elu_backward_as_clamp
    table[aten.mean.dim] = mean_as_pooling
    table[aten.sum.dim_IntList] = sum_as_pooling
    table[aten.sum.default] = sum_as_pooling
    table[aten.mul.Scalar] = mul_scalar_as_tensor
    return table
