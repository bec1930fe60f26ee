"""The ExecuTorch program (model.pte) and the runtime's "executorch" backend compute what PyTorch computes.

Needs the optional executorch package (skipped without it); `.ci/run` runs this file in a venv with
`.[train,executorch,dev]`. Lowering takes a few minutes, so the model is tiny.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")
from executorch.runtime import Runtime  # noqa: E402

import edgeadapt.runtime as rt  # noqa: E402
from edgeadapt.export import export_artifact  # noqa: E402
from edgeadapt.export.executorch_program import lower_to_xnnpack  # noqa: E402
from edgeadapt.export.onnx_graphs import GraphSpec  # noqa: E402
from edgeadapt.sdk import Conv4, InnerLoop, save_checkpoint  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["relu-group-all", "elu-group-all", "elu-batch-all", "elu-group-last_block"])
def exported(request, tmp_path_factory):
    """An artifact with its program; under last_block, the program's embed method runs the frozen layers."""
    folder = tmp_path_factory.mktemp(f"executorch-{request.param}")
    torch.manual_seed(0)
    activation, norm, scope = request.param.split("-")
    model = Conv4(ways=4, hidden=8, activation=activation, norm=norm or "group")
    for name, buffer in model.named_buffers():  # batch norm: running statistics far from 0 and 1
        if name.endswith(("running_mean", "running_var")):
            buffer.copy_(torch.rand(buffer.shape) + 0.5 * name.endswith("running_var"))
    model.eval()
    training = {"algorithm": "fomaml", "inner_lr": 0.5, "inner_steps": 2, "scope": scope, "loss": "cross_entropy"}
    save_checkpoint(folder / "ckpt", model, {"training": training})
    export_artifact(folder / "ckpt", folder / "model", max_shots=3, executorch=True)
    assert ("embed.onnx" in rt.load(folder / "model").manifest["files"]) == (scope != "all")
    return folder / "model", InnerLoop(model, 0.5, 2, "cross_entropy", scope)


def test_manifest_lists_the_program(exported):
    learner = rt.load(exported[0], backend="executorch", threads=1)
    assert "model.pte" in learner.manifest["files"]
    assert learner.manifest["executorch"]["support_sizes"] == [5, 10, 12]


@pytest.mark.parametrize("ways, shots", [(2, 1), (3, 2), (3, 3), (4, 3)])  # adapt_5, adapt_10 and adapt_12
def test_executorch_adaptation_matches_pytorch_and_onnxruntime(exported, ways, shots):
    path, inner = exported
    g = np.random.default_rng(ways * 10 + shots)
    x = g.random((ways * shots, 1, 28, 28), dtype=np.float32)
    y = np.repeat(np.arange(ways), shots)
    queries = g.random((130, 1, 28, 28), dtype=np.float32)  # more than one predict chunk (128)
    on_executorch = rt.load(path, backend="executorch", threads=1).adapt(x, y.tolist()).predict_proba(queries)
    on_onnxruntime = rt.load(path, threads=1).adapt(x, y.tolist()).predict_proba(queries)

    class_mask = (torch.arange(4) < ways).float()
    expected = inner.probabilities(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(queries),
                                   class_mask)[:, :ways].numpy()
    np.testing.assert_allclose(on_executorch, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(on_onnxruntime, expected, atol=TOLERANCE, rtol=0)
    assert on_executorch.shape == (130, ways)


class _Bounded:
    """A program method whose first input is planned for at most ``rows`` rows (as ExecuTorch planned 15 for a
    224 x 224 MobileNet's embed): refuses more, as ExecuTorch does."""

    def __init__(self, method, rows: int):
        self._method, self.rows, self.calls = method, rows, []

    @property
    def metadata(self):
        rows = self.rows

        class _Input:
            def sizes(self):
                return (rows,)

        return type("Meta", (), {"input_tensor_meta": lambda _, i: _Input()})()

    def execute(self, inputs):
        assert len(inputs[0]) <= self.rows, "more rows than the method is planned for"
        self.calls.append(len(inputs[0]))
        return self._method.execute(inputs)


def test_batches_run_in_chunks_the_program_is_planned_for(exported):
    path, _ = exported
    g = np.random.default_rng(7)
    x, queries = g.random((6, 1, 28, 28), dtype=np.float32), g.random((20, 1, 28, 28), dtype=np.float32)
    learner = rt.load(path, backend="executorch", threads=1)
    expected = learner.adapt(x, [0, 0, 1, 1, 2, 2]).predict_proba(queries)
    engine = learner._engine
    engine._predict = _Bounded(engine._predict, 7)
    if engine._embed is not None:
        engine._embed = _Bounded(engine._embed, 7)
    got = learner.adapt(x, [0, 0, 1, 1, 2, 2]).predict_proba(queries)
    np.testing.assert_array_equal(got, expected)
    assert engine._predict.calls == [7, 7, 6]


def test_artifact_without_a_program_is_refused_clearly(tmp_path):
    torch.manual_seed(0)
    training = {"algorithm": "fomaml", "inner_lr": 0.5, "inner_steps": 1, "scope": "head", "loss": "cross_entropy"}
    save_checkpoint(tmp_path / "ckpt", Conv4(ways=2, hidden=4), {"training": training})
    export_artifact(tmp_path / "ckpt", tmp_path / "model", max_shots=1, executorch=False)
    with pytest.raises(rt.ArtifactError, match="no ExecuTorch program"):
        rt.load(tmp_path / "model", backend="executorch")


# Operators whose portable kernels cost more than the matrix products of a layer, or broke XNNPACK partitions.
HEAVY_OPERATORS = ("convolution", "mm", "addmm", "elu", "sum", "mean", "mul.Scalar", "native_group_norm")


@pytest.mark.parametrize("activation, scope, norm", [("relu", "all", "group"), ("elu", "all", "group"),
                                                     ("elu", "head", "group"), ("elu", "all", "batch")])
def test_adaptation_leaves_no_heavy_operator_to_portable_kernels(activation, scope, norm, tmp_path):
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4, activation=activation, norm=norm).eval()
    inner = InnerLoop(model, 0.5, 1, "cross_entropy", scope)
    spec = GraphSpec(input_shape=(1, 28, 28), max_ways=3, max_shots=2)
    edge = lower_to_xnnpack(None, inner, spec, spec.input_shape, [6], predict_batch=None)
    nodes = [n for n in edge.exported_program("adapt_6").graph.nodes if n.op == "call_function"]
    portable = {str(n.target).split("aten.")[-1].split(">")[0] for n in nodes if "aten." in str(n.target)}
    assert any("delegate" in str(n.target) for n in nodes)
    assert not {op for op in portable if op.startswith(HEAVY_OPERATORS)}
    path = tmp_path / "adapt.pte"
    path.write_bytes(edge.to_executorch().buffer)
    Runtime.get().load_program(str(path)).load_method("adapt_6")  # XNNPACK builds every delegated operator


class _Method:
    """A program's ``forward`` method that keeps the program and its bytes alive while it runs (ExecuTorch reads
    both in place: a method whose program was freed reads freed memory)."""

    def __init__(self, edge):
        self.buffer = edge.to_executorch().buffer
        self.program = Runtime.get().load_program(self.buffer)
        self.method = self.program.load_method("forward")

    def execute(self, inputs):
        return self.method.execute(inputs)


class _ScaledElu(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return torch.ops.aten.elu.default(x, 1.0, self.scale, 1.0) + 1.0


@pytest.mark.parametrize("scale, delegated", [(1.0, True), (2.0, False)])
def test_xnnpack_takes_the_plain_elu_and_leaves_scaled_ones(scale, delegated):
    from executorch.exir import to_edge_transform_and_lower

    from edgeadapt.export.xnnpack_partitioners import xnnpack_partitioners

    x = torch.linspace(-6, 3, 4 * 32).reshape(4, 32)
    program = torch.export.export(_ScaledElu(scale), (x,))
    edge = to_edge_transform_and_lower(program, partitioner=xnnpack_partitioners(constant_convolutions=False))
    targets = [str(n.target) for n in edge.exported_program().graph.nodes if n.op == "call_function"]
    assert any("elu" in t for t in targets) is not delegated
    method = _Method(edge)
    torch.testing.assert_close(method.execute([x])[0], torch.ops.aten.elu.default(x, 1.0, scale, 1.0) + 1.0,
                               rtol=0, atol=TOLERANCE)


def test_an_int8_program_passes_its_own_self_check_and_predicts_close_to_float(tmp_path):
    """--quantize int8 with the ExecuTorch program: its embed method is XNNPACK-quantised, checked against the
    probabilities ExecuTorch gave at export (it quantises otherwise than onnxruntime), and close to float."""
    from edgeadapt.export.quantize import calibration_sample
    from edgeadapt.sdk.recipes import dataset_classes

    torch.manual_seed(0)
    training = {"algorithm": "reptile", "inner_lr": 0.5, "inner_steps": 2, "scope": "head", "loss": "cross_entropy",
                "head_init": "prototypes", "head_scale": 0.5}
    save_checkpoint(tmp_path / "ckpt", Conv4(ways=4, hidden=16).eval(), {"training": training})
    glyphs = dataset_classes("glyphs", None, "train")
    float_path = export_artifact(tmp_path / "ckpt", tmp_path / "float", max_ways=4, max_shots=2, executorch=True)
    int8_path = export_artifact(tmp_path / "ckpt", tmp_path / "int8", max_ways=4, max_shots=2, executorch=True,
                                quantize="int8", calibration=calibration_sample(glyphs))
    assert (int8_path / "model.pte").stat().st_size < 0.8 * (float_path / "model.pte").stat().st_size
    starts = glyphs.starts.tolist()
    x = glyphs.decode(glyphs.examples[[starts[c] + i for c in range(4) for i in range(2)]]).numpy()
    queries = glyphs.decode(glyphs.examples[[starts[c] + 2 + i for c in range(4) for i in range(4)]]).numpy()
    labels = [c for c in range(4) for _ in range(2)]
    results = {}
    for backend in ("executorch", "onnxruntime"):
        learner = rt.load(int8_path, backend=backend, threads=1)
        assert learner.self_test() <= 1e-4
        results[backend] = learner.adapt(x, labels).predict_proba(queries)
    reference = rt.load(float_path, backend="executorch", threads=1).adapt(x, labels).predict_proba(queries)
    for probabilities in results.values():
        assert np.abs(probabilities - reference).max() < 0.1
        assert (probabilities.argmax(1) == reference.argmax(1)).mean() >= 0.9


def _clamped_network() -> torch.nn.Sequential:
    """A convolution + ReLU6 pair (a MobileNet's) whose pre-activation range is far wider than 0..6."""
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                                 torch.nn.Flatten())
    with torch.no_grad():
        layers[0].weight.mul_(20.0)
    return layers.eval()


def test_int8_quantises_a_convolution_and_its_clamp_as_one(monkeypatch):
    """ReLU6 after a convolution: the int8 embed method quantises the pair over the clamp's range, as onnxruntime's
    QDQ form does, and ExecuTorch runs it as XNNPACK's quantised convolution with output bounds. Quantising the
    convolution's wide output first (XNNPACKQuantizer's own annotation) loses most of the clamped levels."""
    from executorch.exir import to_edge_transform_and_lower

    from edgeadapt.export import xnnpack_quantization
    from edgeadapt.export.executorch_program import int8_embed_program
    from edgeadapt.export.xnnpack_partitioners import xnnpack_partitioners

    layers = _clamped_network()
    calibration = torch.rand(64, 3, 8, 8).numpy() * 2 - 1
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        reference = layers(x)
    fused = int8_embed_program(layers, (3, 8, 8), 16, calibration)
    with monkeypatch.context() as patch:
        patch.setattr(xnnpack_quantization, "annotate_clamped_convolutions", lambda model, config: 0)
        separate = int8_embed_program(layers, (3, 8, 8), 16, calibration)
    fused_error, separate_error = ((p.module()(x) - reference).abs().mean().item() for p in (fused, separate))
    assert fused_error < 0.25 * separate_error
    edge = to_edge_transform_and_lower(fused, partitioner=xnnpack_partitioners(constant_convolutions=True))
    left = [str(n.target) for n in edge.exported_program().graph.nodes if n.op == "call_function"]
    assert not [t for t in left if "hardtanh" in t or "convolution" in t]
    method = _Method(edge)
    step = 6.0 / 255
    torch.testing.assert_close(method.execute([x[:8]])[0], fused.module()(x[:8]), rtol=0, atol=2 * step)
