"""Slow operators rewritten in every written graph: the same function as onnxruntime's own operator, no slow
operator left in an exported graph, and int8 quantisation leaving the rewrite float."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from edgeadapt.export.onnx_graphs import export_embed
from edgeadapt.export.onnx_rewrites import REWRITES, REWRITTEN, rewrite_slow_operators
from edgeadapt.export.quantize import quantize_embed


def _one_node_model(op_type: str, **attributes) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op_type, ["x"], ["y"], **attributes)], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_the_rewritten_elu_computes_what_onnxruntimes_elu_does(alpha):
    x = np.concatenate([np.random.default_rng(0).normal(0, 4, (200, 8)),
                        np.array([[0.0, -0.0, 1e-30, -1e-30, -80.0, 80.0, -1e-7, 1e-7]])]).astype(np.float32)
    original = _one_node_model("Elu", alpha=alpha)
    expected = _run(original, x)
    rewritten = rewrite_slow_operators(_one_node_model("Elu", alpha=alpha))
    onnx.checker.check_model(rewritten, full_check=True)
    assert "Elu" not in {node.op_type for node in rewritten.graph.node}
    # exp(x) - 1 as a sum: near 0 the difference is a rounding of alpha, not of the (tiny) result
    np.testing.assert_allclose(_run(rewritten, x), expected, rtol=1e-6, atol=2 * alpha * np.finfo(np.float32).eps)


def test_a_graph_without_slow_operators_is_left_as_it_is():
    model = _one_node_model("Relu")
    before = model.SerializeToString()
    assert rewrite_slow_operators(model).SerializeToString() == before


def _elu_layers() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ELU(), torch.nn.Conv2d(4, 4, 3),
                               torch.nn.ELU(alpha=0.5), torch.nn.Flatten()).eval()


def test_exported_graphs_hold_no_slow_operator_and_match_pytorch(tmp_path):
    layers = _elu_layers()
    model = export_embed(layers, (1, 8, 8), tmp_path / "embed.onnx")
    assert not {node.op_type for node in model.graph.node} & set(REWRITES)
    x = torch.randn(5, 1, 8, 8)
    session = ort.InferenceSession(str(tmp_path / "embed.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, layers(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_int8_quantisation_leaves_the_rewritten_nodes_float(tmp_path):
    export_embed(_elu_layers(), (1, 8, 8), tmp_path / "embed.onnx")
    quantize_embed(tmp_path / "embed.onnx", np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32))
    model = onnx.load(tmp_path / "embed.onnx")
    producers = {output: node for node in model.graph.node for output in node.output}
    exponentials = [node for node in model.graph.node if node.op_type == "Exp"]
    assert len(exponentials) == 2  # one per ELU, fed by the float Min, not by a quantised tensor
    for node in exponentials:
        assert producers[node.input[0]].op_type == "Min"
    assert not any(node.name.startswith(REWRITTEN) for node in model.graph.node)  # names stripped after quantising
