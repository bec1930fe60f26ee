"""The built-in backbones (``edgeadapt.sdk.networks`` through the backbone registry) follow the model convention, and
their exported adapt + predict graphs compute what PyTorch's inner loop computes when the head or the last block
(residual with max pooling, depthwise-separable, inverted residual; batch norm, ReLU6, hardswish, leaky ReLU) adapts."""

import dataclasses

import numpy as np
import pytest
import torch

from deployed_graphs import export_deployed
from edgeadapt.export.onnx_graphs import GraphSpec, adapt_program, adapted_names
from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.sdk import Conv4, InnerLoop, TaskBatch, check_backbone, maml_gradient
from edgeadapt.sdk.backbones import BackboneSettings, build_backbone
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.scopes import first_adapted_layer

WAYS, SHOTS = 4, 3
# case: (registered backbone, activation (None: the backbone's default), input shape); every width is 4
BACKBONES = {
    "conv4": ("conv4", None, (3, 84, 84)),
    "resnet12": ("resnet12", None, (3, 32, 32)),
    "mobilenet_v1": ("mobilenet_v1", None, (3, 32, 32)),
    "mobilenet_v2": ("mobilenet_v2", None, (3, 32, 32)),
    "mobilenet_v2-hardswish": ("mobilenet_v2", "hardswish", (3, 32, 32)),
}
# Onnxruntime against PyTorch, on probabilities (absolute) and on adapted parameters (relative to each tensor's
# largest entry, at least 1). Two steps through a prototype head built from the very features the last block adapts
# amplify float32 rounding (as in tests/test_export_onnx.py), and the gradients of these activations and of max
# pooling jump (docs/deploy.md, "Known limits"), so the bound is the product's fidelity bound, 1e-4 (docs/deploy.md);
# measured here: at most 3e-5 (ResNet-12, last block), 3e-6 for the others.
TOLERANCE = 1e-4
MOVES = 1e-3  # the least change of some probability that two steps must make, so that the check means something


def _task(shape: tuple[int, ...], ways: int, shots: int, seed: int, size: int | None = None):
    """``ways`` classes, each a random pattern seen through noise: ``shots`` support examples per class (padded with
    zero-weight examples to ``size``), two queries per class, and the class mask of a ``WAYS``-way graph."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(ways, *shape, generator=g)

    def examples(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(ways).repeat_interleave(per_class)
        return 0.6 * patterns[labels] + 0.4 * torch.rand(len(labels), *shape, generator=g), labels

    x, y = examples(shots)
    queries, _ = examples(2)
    pad = (size or len(y)) - len(y)
    x = torch.cat([x, torch.rand(pad, *shape, generator=g)])
    y = torch.cat([y, torch.zeros(pad, dtype=torch.int64)])
    example_mask = (torch.arange(len(y)) < ways * shots).float()
    return x, y, example_mask, (torch.arange(WAYS) < ways).float(), queries


def _backbone(case: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The case's backbone at width 4, its batch norm as pretraining leaves it: random scales and shifts, running
    statistics of data (so that features differ between classes instead of vanishing), in eval mode."""
    name, activation, shape = BACKBONES[case]
    torch.manual_seed(0)
    model = build_backbone(name, InputSpec(shape), BackboneSettings(ways=WAYS, width=4, activation=activation,
                                                                     norm="batch"))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics: those of the one batch below
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        model(_task(shape, WAYS, 4, seed=99)[0])
    return model.eval(), shape


def _inner_loop(model: torch.nn.Module, shape: tuple[int, ...], scope: str) -> InnerLoop:
    """Two steps from a prototype head whose inverse temperature puts the support's logits at a scale of about 1,
    so that the softmax is not saturated and a step moves the probabilities."""
    with torch.no_grad():
        features = model.features(_task(shape, WAYS, SHOTS, seed=98)[0])
    squared = torch.cdist(features, features) ** 2
    head_scale = float(1 / squared[squared > 0].median())
    return InnerLoop(model, inner_lr=0.1, inner_steps=2, scope=scope, head_init="prototypes", ways=WAYS,
                     head_scale=head_scale)


@pytest.mark.parametrize("case", BACKBONES)
def test_backbone_follows_the_convention(case):
    model, shape = _backbone(case)
    check_backbone(model, shape)
    blocks = [layer for layer in model.features if any(True for _ in layer.parameters())]
    assert len(blocks) >= 4  # each block one layer of features, so "last_block" adapts a whole block


@pytest.mark.parametrize("name", ["resnet12", "mobilenet_v1", "mobilenet_v2"])
def test_backbones_refuse_inputs_they_cannot_take(name):
    with pytest.raises(ConfigError, match=name):
        build_backbone(name, InputSpec((3, 32, 24)), BackboneSettings(ways=5))
    with pytest.raises(ConfigError, match="activation"):
        build_backbone(name, InputSpec((3, 32, 32)), BackboneSettings(ways=5, activation="swish"))


@pytest.mark.parametrize("case", ["resnet12", "mobilenet_v1", "mobilenet_v2"])
def test_meta_training_adapts_the_last_block(case):
    """MAML differentiates through a last-block adaptation vectorised over tasks (vmap: depthwise convolutions with
    per-task weights, max pooling), and the task-by-task first-order path adapts as vmap does."""
    model, shape = _backbone(case)
    inner = _inner_loop(model, shape, "last_block")
    tasks = [_task(shape, WAYS, 2, seed) for seed in (3, 4)]
    labels = torch.arange(WAYS).repeat_interleave(2)
    batch = TaskBatch(torch.stack([t[0] for t in tasks]), torch.stack([t[1] for t in tasks]),
                      torch.stack([t[4] for t in tasks]), torch.stack([labels, labels]))
    step = maml_gradient(inner, inner.params(), batch)
    assert all(torch.isfinite(g).all() for g in step.gradient.values())
    last = f"features.{first_adapted_layer(model, 'last_block')}."
    assert all(g.abs().sum() > 0 for name, g in step.gradient.items() if name.startswith(last))
    with torch.no_grad():
        vectorised = inner.adapt_batch(inner.params(), batch.support_x, batch.support_y)
        one_by_one = dataclasses.replace(inner, vectorise=False).adapt_batch(inner.params(), batch.support_x,
                                                                             batch.support_y)
    for name, value in vectorised.items():
        torch.testing.assert_close(one_by_one[name], value, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module", params=[(case, scope) for case in BACKBONES for scope in ("head", "last_block")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def exported(request, tmp_path_factory):
    case, scope = request.param
    model, shape = _backbone(case)
    inner = _inner_loop(model, shape, scope)
    spec = GraphSpec(shape, max_ways=WAYS, max_shots=SHOTS)
    return export_deployed(inner, spec, tmp_path_factory.mktemp(f"{case}-{scope}")), spec


@pytest.mark.parametrize("ways, shots, seed, padded", [(4, 3, 0, False), (3, 2, 1, True), (2, 1, 2, False)])
def test_onnx_adaptation_matches_pytorch(exported, ways, shots, seed, padded):
    graphs, spec = exported
    inner = graphs.inner
    x, y, example_mask, class_mask, queries = _task(spec.input_shape, ways, shots, seed,
                                                    spec.support_size if padded else None)
    onnx_params = graphs.adapt(x, y, example_mask, class_mask)
    torch_params = inner.inner_update(inner.params(), x, y, example_mask=example_mask, class_mask=class_mask)
    for name, value in onnx_params.items():
        expected = torch_params[name].numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(value, expected, atol=TOLERANCE * scale, rtol=0, err_msg=name)
    probabilities = graphs.predict(queries, class_mask, onnx_params)
    with torch.no_grad():
        expected = inner.predict_probabilities(queries, torch_params, class_mask).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE, rtol=0)
    assert np.all(probabilities[:, ways:] == 0)

    start = inner.inner_update(inner.params(), x, y, steps=0, example_mask=example_mask, class_mask=class_mask)
    unadapted = inner.predict_probabilities(queries, start, class_mask).detach().numpy()
    assert np.abs(expected - unadapted).max() > MOVES  # the steps did change the predictions


def test_a_support_size_equal_to_a_channel_count_stays_dynamic():
    """Only the support size is symbolic while tracing: were a weight's sizes symbolic too, 10 support examples and a
    batch-norm layer of 10 channels would share one symbol, which the layer's shape check pins to 10."""
    inner = InnerLoop(Conv4(ways=5, hidden=10, norm="batch").eval(), 0.5, 1, scope="last_block")
    program = adapt_program(inner, GraphSpec((1, 28, 28), max_ways=5, max_shots=2))
    x, y = torch.rand(7, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 0, 1])
    adapted = program.module()(x, y, torch.ones(7), torch.ones(5))
    expected = inner.inner_update(inner.params(), x, y)
    for name, value in zip(adapted_names(inner), adapted):
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=0)


@pytest.mark.slow  # lowering takes half a minute to three minutes per program
@pytest.mark.parametrize("case", ["mobilenet_v1", "mobilenet_v2", "resnet12"])
@pytest.mark.parametrize("scope", ["head", "last_block"])
def test_executorch_adaptation_matches_pytorch(scope, case):
    """Depthwise convolutions (batched matrix products over groups), inverted residuals and max pooling adapt in the
    ExecuTorch program (XNNPACK and portable kernels) as in PyTorch."""
    pytest.importorskip("executorch")
    from executorch.runtime import Runtime

    from edgeadapt.export.artifact import feature_shape
    from edgeadapt.export.executorch_program import lower_to_xnnpack
    from edgeadapt.runtime.format.names import EMBED_METHOD, PREDICT_METHOD, adapt_method
    from edgeadapt.sdk.frozen_layers import split_inner_loop

    model, shape = _backbone(case)
    inner = _inner_loop(model, shape, scope)
    embed, part_inner = split_inner_loop(inner)
    part_spec = GraphSpec(feature_shape(embed, shape), max_ways=WAYS, max_shots=SHOTS)
    edge = lower_to_xnnpack(embed, part_inner, part_spec, shape, [part_spec.support_size],
                            part_spec.support_size)  # embed takes the whole support set at once
    buffer = edge.to_executorch().buffer  # ExecuTorch reads the program's bytes in place: kept while it runs
    program = Runtime.get().load_program(buffer)
    adapt = program.load_method(adapt_method(part_spec.support_size))
    embed_method, predict = program.load_method(EMBED_METHOD), program.load_method(PREDICT_METHOD)
    for ways, shots, seed in [(4, 3, 0), (3, 2, 1)]:
        x, y, example_mask, class_mask, queries = _task(shape, ways, shots, seed, part_spec.support_size)
        params = adapt.execute([embed_method.execute([x])[0].clone(), y, example_mask, class_mask])
        probabilities = predict.execute([embed_method.execute([queries])[0].clone(), class_mask, *params])[0]
        expected = inner.probabilities(x, y, queries, class_mask=class_mask, example_mask=example_mask)
        torch.testing.assert_close(probabilities, expected, atol=TOLERANCE, rtol=0)
