import pytest
import torch
import torch.nn.functional as F
from torch._decomp import core_aten_decompositions
from torch.export.graph_signature import InputKind
from torch.fx.experimental.proxy_tensor import make_fx

from edgeadapt.export import xnnpack_decompositions
from edgeadapt.export.decompositions import convolution_backward, max_pool_backward
from edgeadapt.export.xnnpack_decompositions import (
    convolution_as_matmul,
    convolution_backward_as_matmul,
    elu_backward_as_clamp,
    group_norm_two_pass,
    matmul_decompositions,
    mean_as_pooling,
    relu_backward_as_clamp,
    sum_as_pooling,
)
from edgeadapt.export.onnx_graphs import GraphSpec, adapt_program, predict_program
from edgeadapt.sdk import Conv4, InnerLoop

CASES = [(28, 2, 1), (14, 2, 1), (7, 2, 1), (4, 2, 1), (9, 1, 1), (8, 1, 0), (10, 3, 2)]


@pytest.mark.parametrize("backward", [convolution_backward, convolution_backward_as_matmul])
@pytest.mark.parametrize("size, stride, padding", CASES)
def test_convolution_backward_matches_autograd(size, stride, padding, backward):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(3, 2, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    y = F.conv2d(x, w, b, stride=stride, padding=padding)
    upstream = torch.randn(y.shape, dtype=torch.float64, generator=g)
    expected = torch.autograd.grad(y, [x, w, b], upstream)
    ours = backward(upstream, x, w, [4], [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1, [True, True, True])
    for a, e in zip(ours, expected):
        torch.testing.assert_close(a, e)


# (input channels, output channels, groups, kernel): depthwise, depthwise with a channel multiplier, grouped, 1x1
GROUPED = [(6, 6, 6, 3), (4, 8, 4, 3), (6, 9, 3, 3), (4, 6, 2, 1)]


@pytest.mark.parametrize("backward", [convolution_backward, convolution_backward_as_matmul])
@pytest.mark.parametrize("channels_in, channels_out, groups, kernel", GROUPED)
@pytest.mark.parametrize("size, stride, padding", [(9, 1, 1), (10, 2, 1), (7, 2, 0), (8, 1, 0)])
def test_grouped_convolution_backward_matches_autograd(channels_in, channels_out, groups, kernel, size, stride,
                                                       padding, backward):
    g = torch.Generator().manual_seed(size * groups)
    x = torch.randn(3, channels_in, size, size + 1, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(channels_out, channels_in // groups, kernel, kernel, dtype=torch.float64, generator=g,
                    requires_grad=True)
    b = torch.randn(channels_out, dtype=torch.float64, generator=g, requires_grad=True)
    y = F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    upstream = torch.randn(y.shape, dtype=torch.float64, generator=g)
    expected = torch.autograd.grad(y, [x, w, b], upstream)
    ours = backward(upstream, x.detach(), w.detach(), [channels_out], [stride] * 2, [padding] * 2, [1, 1], False,
                    [0, 0], groups, [True, True, True])
    for a, e in zip(ours, expected):
        torch.testing.assert_close(a, e)
    as_matmul = convolution_as_matmul(x.detach(), w.detach(), b.detach(), [stride] * 2, [padding] * 2, [1, 1], False,
                                      [0, 0], groups)
    torch.testing.assert_close(as_matmul, y.detach())


@pytest.mark.parametrize("size, stride, padding", CASES)
def test_convolution_as_matmul_matches_conv2d(size, stride, padding):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(3, 2, size, size + 1, dtype=torch.float64, generator=g)
    w, b = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    ours = convolution_as_matmul(x, w, b, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1)
    torch.testing.assert_close(ours, F.conv2d(x, w, b, stride=stride, padding=padding))


@pytest.mark.parametrize("backward", [convolution_backward, convolution_backward_as_matmul])
@pytest.mark.parametrize("dilation, transposed", [([2, 2], False), ([1, 1], True)])
def test_dilated_and_transposed_convolutions_are_refused_clearly(backward, dilation, transposed):
    x, w = torch.randn(1, 4, 7, 7), torch.randn(4, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="undilated, not transposed"):
        backward(torch.randn(1, 4, 3, 3), x, w, None, [1, 1], [0, 0], dilation, transposed, [0, 0], 2,
                 [True, True, False])


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 2, 1)])
def test_max_pool_backward_matches_autograd_ties_included(kernel, stride, padding):
    g = torch.Generator().manual_seed(kernel * 10 + stride)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=g)
    x[0, 0, :4, :4] = 1.0  # a flat region: windows whose maximum is tied, as on a uniform background
    x[1, 2] = 0.0
    x.requires_grad_()
    y, indices = torch.ops.aten.max_pool2d_with_indices(x, [kernel] * 2, [stride] * 2, [padding] * 2)
    upstream = torch.randn(y.shape, dtype=torch.float64, generator=g)
    expected, = torch.autograd.grad(y, x, upstream)
    ours = max_pool_backward(upstream, x.detach(), [kernel] * 2, [stride] * 2, [padding] * 2, [1, 1], False, indices)
    torch.testing.assert_close(ours, expected)  # a tie's gradient goes to one position only, not shared


@pytest.mark.parametrize("shape, groups", [((4, 64, 7, 7), 1), ((4, 64, 7, 7), 4), ((3, 8, 10), 2), ((5, 6), 3)])
def test_group_norm_two_pass_matches_pytorch_where_one_pass_cancels(shape, groups):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) * 0.01 + 100.0  # large mean, tiny spread
    n, c, hxw = shape[0], shape[1], x[0, 0].numel()
    w, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    exact = torch.ops.aten.native_group_norm(x.double(), w.double(), b.double(), n, c, hxw, groups, 1e-5)
    ours = group_norm_two_pass(x, w, b, n, c, hxw, groups, 1e-5)
    torch.testing.assert_close(ours[0].double(), exact[0], atol=0.05, rtol=0)  # torch's own f32 error: ~1e-3 x |w|
    torch.testing.assert_close(ours[1].double(), exact[1])
    torch.testing.assert_close(ours[2].double(), exact[2], rtol=1e-3, atol=0)


def test_group_norm_two_pass_keeps_activations_in_their_layout():
    """Every full-size tensor keeps the input's (N, C, H, W) shape: reshaping it (as a flat mean would) makes
    XNNPACK transpose it out of its channels-last layout and back, which took a third of head-only adaptation."""
    x, w, b = torch.randn(4, 64, 7, 7), torch.randn(64), torch.randn(64)
    graph = make_fx(lambda x, w, b: group_norm_two_pass(x, w, b, 4, 64, 49, 1, 1e-5))(x, w, b)
    full_size = [n for n in graph.graph.nodes if n.op == "call_function" and n.meta["val"].numel() == x.numel()]
    assert len(full_size) >= 5
    assert all(tuple(n.meta["val"].shape) == tuple(x.shape) for n in full_size)
    means = [n for n in graph.graph.nodes if n.target == torch.ops.aten.mean.dim]
    assert means and all(list(n.args[1]) == [2, 3] and n.args[2] for n in means)


def _activation_inputs():
    """Values around the kink: signed zeros, subnormals, tiny and large numbers, and ordinary ones."""
    special = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 1e-7, -1e-7, 0.5, -0.5, 3.0, -3.0, 80.0, -80.0])
    x = torch.cat([special, torch.randn(500, generator=torch.Generator().manual_seed(0)) * 4])
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return x, upstream


@pytest.mark.parametrize("threshold", [0.0, 0.25])
def test_relu_backward_as_clamp_equals_autograd_bitwise(threshold):
    x, upstream = _activation_inputs()
    x = x.requires_grad_()
    expected, = torch.autograd.grad(F.threshold(x, threshold, 0.0), x, upstream)
    ours = relu_backward_as_clamp(upstream, x.detach(), threshold)
    assert torch.equal(ours, expected)
    relu_out = torch.relu(x.detach())  # ReLU's autograd passes its result
    assert torch.equal(relu_backward_as_clamp(upstream, relu_out, 0.0),
                       torch.autograd.grad(torch.relu(x), x, upstream)[0])


@pytest.mark.parametrize("is_result", [False, True])
def test_elu_backward_as_clamp_equals_autograd_bitwise(is_result):
    x, upstream = _activation_inputs()
    x = x.requires_grad_()
    y = F.elu(x)
    expected, = torch.autograd.grad(y, x, upstream)
    saved = (y if is_result else x).detach()
    ours = elu_backward_as_clamp(upstream, 1.0, 1.0, 1.0, is_result, saved)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)  # eager's vectorised exp rounds differently
    core = core_aten_decompositions()[torch.ops.aten.elu_backward.default](upstream, 1.0, 1.0, 1.0, is_result, saved)
    assert torch.equal(ours, core)


def test_elu_backward_with_other_coefficients_takes_the_core_formula():
    x, upstream = _activation_inputs()
    x = x.requires_grad_()
    expected, = torch.autograd.grad(F.elu(x, alpha=0.5), x, upstream)
    torch.testing.assert_close(elu_backward_as_clamp(upstream, 0.5, 1.0, 1.0, False, x.detach()), expected)


REDUCTIONS = [((3, 4, 5, 6), [3], False), ((3, 4, 5, 6), [0, 2, 3], False), ((3, 4, 5, 6), [1], True),
              ((3, 4, 5, 6), [-1, 0], True), ((7,), [], False), ((7, 2), None, True), ((2, 3, 4), [0, 2], False)]


@pytest.mark.parametrize("shape, dim, keepdim", REDUCTIONS)
def test_reductions_as_pooling_match_pytorch(shape, dim, keepdim):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    all_dims = dim if dim else list(range(x.dim()))
    torch.testing.assert_close(mean_as_pooling(x, dim, keepdim), x.mean(all_dims, keepdim=keepdim))
    torch.testing.assert_close(sum_as_pooling(x, dim, keepdim), x.sum(all_dims, keepdim=keepdim))


def test_reductions_keep_the_delegated_form_and_integers():
    assert mean_as_pooling(torch.randn(2, 3, 4, 5), [2, 3], True) is NotImplemented
    assert sum_as_pooling(torch.arange(6), [0]) is NotImplemented


@pytest.mark.parametrize("scope", ["all", "head"])
@pytest.mark.parametrize("program", ["adapt", "predict"])
def test_exported_convolutions_take_constant_weights(program, scope, monkeypatch):
    """XNNPACK delegates a convolution only if its weight is a constant of the program, not a copy made in the trace.

    Adapted convolutions become im2col (one-hot depthwise convolutions) + matrix products; frozen ones (head-only
    adaptation) stay the model's own convolutions.
    """
    monkeypatch.setattr(xnnpack_decompositions, "_ONE_HOT_TAPS", {})  # so the im2col kernels are first built while tracing
    torch.manual_seed(0)
    inner = InnerLoop(Conv4(ways=3, hidden=4, activation="elu"), 0.5, 1, "cross_entropy", scope)
    spec = GraphSpec(input_shape=(1, 28, 28), max_ways=3, max_shots=2)
    table = matmul_decompositions(convolution_weights_are_inputs=scope == "all")
    if program == "adapt":
        exported = adapt_program(inner, spec, table, fixed_support=6)
    else:
        exported = predict_program(inner, spec, 8, table)
    constants = {s.arg.name for s in exported.graph_signature.input_specs
                 if s.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)}
    convolutions = [n for n in exported.graph.nodes if n.target is torch.ops.aten.convolution.default]
    assert convolutions
    assert [n.args[1].name for n in convolutions if n.args[1].name not in constants] == []
    im2col = [n for n in convolutions if tuple(n.args[1].meta["val"].shape[:2]) == (9 * n.args[8], 1)]  # one-hot taps
    assert len(im2col) == len(convolutions) if scope == "all" else (im2col == [] and len(convolutions) == 4)
