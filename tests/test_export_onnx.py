"""The exported ONNX graphs compute what the SDK computes, for tasks of every size, padded or not (onnxruntime)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeadapt.export.onnx_graphs import GraphSpec, adapted_names, example_adapted, export_adapt, export_predict
from edgeadapt.sdk import Conv4, InnerLoop

SPEC = GraphSpec((1, 28, 28), max_ways=5, max_shots=2)
TOLERANCE = 1e-5  # on probabilities and adapted parameters
# Adapting convolutions through a prototype head (built from the very features it adapts) at lr 0.5 amplifies
# float32 rounding: up to ~6e-5 on weights of size ~1 and ~2e-5 on probabilities. There the product's
# fidelity bound, 1e-4 (docs/deploy.md), is what is checked.
PROTOTYPE_CONV_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=[("all", "relu", "learned", None), ("head", "relu", "learned", None),
                                        ("all", "elu", "learned", None), ("last_block", "elu", "prototypes", None),
                                        ("head", "elu", "prototypes", None), ("all", "elu", "zeros", None),
                                        ("last_block", "elu", "prototypes", 10.0), ("head", "elu", "prototypes", 10.0),
                                        ("last_block", "elu", "prototypes", None, "per-parameter rates"),
                                        ("all", "elu", "learned", None, "batch norm")])
def exported(request, tmp_path_factory):
    scope, activation, head_init, feature_norm, *variant = request.param
    rates, batch_norm = variant == ["per-parameter rates"], variant == ["batch norm"]
    torch.manual_seed(0)
    # a replaced head serves any number of ways
    ways = SPEC.max_ways if head_init == "learned" else 3
    model = Conv4(ways=ways, hidden=8, activation=activation, feature_norm=feature_norm,
                  norm="batch" if batch_norm else "group")
    if batch_norm:  # running statistics far from 0 and 1, so that a graph that ignored them would differ
        for name, buffer in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.copy_(torch.rand(buffer.shape) + 0.5 * name.endswith("running_var"))
        model.eval()
    # elementwise rates in 0.5..1.5 for the last block, one for the head: constants of the exported graph
    lr_scales = {name: 0.5 + torch.rand(p.shape) for name, p in model.named_parameters()
                 if name.startswith("features.3.")} | {"head.weight": torch.tensor(2.0)} if rates else None
    # normalised features of norm 10 are read out at a tenth of the scale, as a trained model's would be
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=3, scope=scope, head_init=head_init, ways=SPEC.max_ways,
                      head_scale=1.0 if feature_norm is None else 0.1, lr_scales=lr_scales)
    tolerance = PROTOTYPE_CONV_TOLERANCE if head_init == "prototypes" and scope != "head" else TOLERANCE
    folder = tmp_path_factory.mktemp(f"{scope}-{activation}-{head_init}-{feature_norm}-{variant}")
    export_adapt(inner, SPEC, folder / "adapt.onnx")
    export_predict(inner, SPEC, folder / "predict.onnx")
    sessions = [ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
                for f in ("adapt.onnx", "predict.onnx")]
    return inner, folder, tolerance, *sessions


def _task(ways, shots, seed, padded):
    """A task of ``ways`` x ``shots`` examples, padded to the graph's full support size or not (dynamic size)."""
    g = torch.Generator().manual_seed(seed)
    n = SPEC.support_size if padded else ways * shots
    x = torch.randn(n, *SPEC.input_shape, generator=g)
    y = torch.zeros(n, dtype=torch.int64)
    example_mask = torch.zeros(n)
    y[: ways * shots] = torch.arange(ways).repeat_interleave(shots)
    example_mask[: ways * shots] = 1.0
    class_mask = (torch.arange(SPEC.max_ways) < ways).float()
    return x, y, example_mask, class_mask


@pytest.mark.parametrize("ways, shots, seed, padded", [(2, 1, 0, True), (3, 2, 1, True), (5, 1, 2, True),
                                                       (5, 2, 3, True), (2, 1, 4, False), (4, 2, 5, False),
                                                       (5, 2, 6, False)])
def test_onnx_adapt_and_predict_match_pytorch(exported, ways, shots, seed, padded):
    inner, _, tolerance, adapt, predict = exported
    x, y, example_mask, class_mask = _task(ways, shots, seed, padded)
    feeds = {"support_x": x.numpy(), "support_y": y.numpy(), "example_mask": example_mask.numpy(),
             "class_mask": class_mask.numpy()}
    onnx_params = dict(zip(adapted_names(inner), adapt.run(None, feeds)))
    torch_params = inner.inner_update(inner.params(), x, y, example_mask=example_mask, class_mask=class_mask)
    for name, value in onnx_params.items():
        np.testing.assert_allclose(value, torch_params[name].numpy(), atol=tolerance, rtol=0)
    start = example_adapted(inner, SPEC)  # it did adapt
    assert any(not np.allclose(v, start[k].numpy()) for k, v in onnx_params.items() if v.shape == start[k].shape)

    queries = torch.randn(7, *SPEC.input_shape, generator=torch.Generator().manual_seed(seed + 100))
    probabilities = predict.run(None, {"x": queries.numpy(), "class_mask": class_mask.numpy(), **onnx_params})[0]
    expected = inner.probabilities(x, y, queries, class_mask=class_mask, example_mask=example_mask)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=tolerance, rtol=0)
    assert np.all(probabilities[:, ways:] == 0) and np.allclose(probabilities.sum(1), 1, atol=1e-6)


def test_graphs_use_stock_operators_only(exported):
    _, folder, _, _, _ = exported
    for name in ("adapt.onnx", "predict.onnx"):
        model = onnx.load(folder / name)
        assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
        assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
        assert "ConvolutionBackward" not in {node.op_type for node in model.graph.node}


def test_predict_accepts_any_batch_size(exported):
    inner, _, _, _, predict = exported
    params = {k: v.numpy() for k, v in example_adapted(inner, SPEC).items()}
    for batch in (1, 33):
        x = np.zeros((batch, *SPEC.input_shape), dtype=np.float32)
        out = predict.run(None, {"x": x, "class_mask": np.ones(SPEC.max_ways, np.float32), **params})[0]
        assert out.shape == (batch, SPEC.max_ways)
