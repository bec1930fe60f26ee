"""The exported ONNX graphs (embed, where the scope freezes layers, then adapt and predict on its features) compute
what the SDK's inner loop computes on the whole model, for tasks of every size, padded or not (onnxruntime)."""

import numpy as np
import onnx
import pytest
import torch

from deployed_graphs import export_deployed
from edgeadapt.export.onnx_graphs import GraphSpec, example_adapted
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
    return export_deployed(inner, SPEC, folder), tolerance


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
    graphs, tolerance = exported
    inner = graphs.inner
    x, y, example_mask, class_mask = _task(ways, shots, seed, padded)
    onnx_params = graphs.adapt(x, y, example_mask, class_mask)
    torch_params = inner.inner_update(inner.params(), x, y, example_mask=example_mask, class_mask=class_mask)
    for name, value in onnx_params.items():
        np.testing.assert_allclose(value, torch_params[name].numpy(), atol=tolerance, rtol=0)
    start = example_adapted(inner, SPEC)  # it did adapt
    assert any(not np.allclose(v, start[k].numpy()) for k, v in onnx_params.items() if v.shape == start[k].shape)

    queries = torch.randn(7, *SPEC.input_shape, generator=torch.Generator().manual_seed(seed + 100))
    probabilities = graphs.predict(queries, class_mask, onnx_params)
    expected = inner.probabilities(x, y, queries, class_mask=class_mask, example_mask=example_mask)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=tolerance, rtol=0)
    assert np.all(probabilities[:, ways:] == 0) and np.allclose(probabilities.sum(1), 1, atol=1e-6)


def test_frozen_weights_are_stored_once(exported):
    """The frozen layers' weights are in embed only: adapt holds the adapted part's starting weights, predict none."""
    graphs = exported[0]
    inner = graphs.inner
    frozen = sum(p.numel() for n, p in inner.params().items() if not inner.is_adapted(n))
    adapted = sum(p.numel() for n, p in inner.params().items() if inner.is_adapted(n))
    stored = {name: sum(int(np.prod(t.dims)) for t in onnx.load(graphs.folder / name).graph.initializer
                        if t.data_type == onnx.TensorProto.FLOAT) for name in graphs.sessions}
    assert stored.get("embed.onnx", 0) >= 0.95 * frozen  # the exporter may fold a few (identical norm scales)
    assert stored["predict.onnx"] < 0.05 * frozen + 64 if frozen else stored["predict.onnx"] <= adapted
    assert stored["adapt.onnx"] <= adapted + 0.05 * frozen + 4096


def test_graphs_use_stock_operators_only(exported):
    graphs = exported[0]
    for name in graphs.sessions:
        model = onnx.load(graphs.folder / name)
        assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
        assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
        assert "ConvolutionBackward" not in {node.op_type for node in model.graph.node}


def test_embed_and_predict_accept_any_batch_size(exported):
    graphs = exported[0]
    params = {k: v.numpy() for k, v in example_adapted(graphs.part_inner, graphs.part_spec).items()}
    for batch in (1, 33):
        features = graphs.embed(torch.zeros(batch, *SPEC.input_shape))
        assert features.shape == (batch, *graphs.part_spec.input_shape)
        out = graphs.sessions["predict.onnx"].run(
            None, {"features": features, "class_mask": np.ones(SPEC.max_ways, np.float32), **params})[0]
        assert out.shape == (batch, SPEC.max_ways)


def test_zero_steps_with_adapted_layers_export_and_return_the_stored_weights(tmp_path):
    """``--inner-steps 0`` with ``--scope last_block`` (batch norm, as the keyword-spotting model): adapt returns the
    block as stored and the head from the prototypes, as the inner loop does. The exporter used to name such a
    returned weight apart from its stored copy, and the graph failed ONNX's checker."""
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8, activation="elu", norm="batch").eval()
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=0, scope="last_block", head_init="prototypes",
                      ways=SPEC.max_ways)
    graphs = export_deployed(inner, SPEC, tmp_path)
    x, y, example_mask, class_mask = _task(3, 2, 0, padded=False)
    onnx_params = graphs.adapt(x, y, example_mask, class_mask)
    torch_params = inner.inner_update(inner.params(), x, y, example_mask=example_mask, class_mask=class_mask)
    for name, value in onnx_params.items():
        np.testing.assert_allclose(value, torch_params[name].numpy(), atol=TOLERANCE, rtol=0)
    assert np.array_equal(onnx_params["features.3.0.weight"], model.features[3][0].weight.detach().numpy())
    queries = torch.randn(4, *SPEC.input_shape)
    expected = inner.probabilities(x, y, queries, class_mask=class_mask, example_mask=example_mask)
    np.testing.assert_allclose(graphs.predict(queries, class_mask, onnx_params), expected.numpy(), atol=TOLERANCE,
                               rtol=0)
