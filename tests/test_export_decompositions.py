import pytest
import torch
import torch.nn.functional as F

from edgeadapt.export.decompositions import (
    convolution_as_matmul,
    convolution_backward,
    convolution_backward_as_matmul,
)

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


@pytest.mark.parametrize("size, stride, padding", CASES)
def test_convolution_as_matmul_matches_conv2d(size, stride, padding):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(3, 2, size, size + 1, dtype=torch.float64, generator=g)
    w, b = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    ours = convolution_as_matmul(x, w, b, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1)
    torch.testing.assert_close(ours, F.conv2d(x, w, b, stride=stride, padding=padding))


def test_grouped_convolutions_are_refused_clearly():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="ungrouped"):
        convolution_backward(torch.randn(1, 4, 3, 3), x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 2,
                             [True, True, False])
