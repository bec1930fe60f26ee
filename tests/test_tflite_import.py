"""A TFLite MobileNet V1 imported into ``mobilenet_v1_imagenet`` (``edgeadapt.sdk.importers``, ``edgeadapt
import-weights``) computes LiteRT's embeddings; bad files are one-line SDK errors; the MobileNets' ``padding`` option
leaves the default models as they were and round-trips through checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeadapt.cli import main
from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.sdk import load_checkpoint, save_checkpoint
from edgeadapt.sdk.backbones import IMAGENET_VALUE_RANGE, BackboneSettings, build_backbone
from edgeadapt.sdk.checkpoint import start_from
from edgeadapt.sdk.errors import CheckpointError, ConfigError
from edgeadapt.sdk.importers import BACKBONE, import_tflite, read_tflite, save_imported
from edgeadapt.sdk.networks import MobileNetV1, SameConv2d, same_padding

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EDGEADAPT_DATA", ROOT.parent / "shared" / "data"))
MODEL = DATA / "pretrained" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
PHOTOS = DATA / "caltech101" / "images"
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not found (set EDGEADAPT_DATA)")
OUTPUT_STEP = 0.023528477177023888  # the scale of every activation (and the embedding) of the file: 6 / 255


@pytest.fixture(scope="module")
def imported():
    pytest.importorskip("tflite", reason="the tflite package (the import extra) is not installed")
    if not MODEL.is_file():
        pytest.skip(f"{MODEL} not found (set EDGEADAPT_DATA)")
    return read_tflite(MODEL)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """16 Caltech-101 photographs (the first of every fifth class: 16 classes), stretched to 224x224 RGB, uint8."""
    image = pytest.importorskip("PIL.Image")
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} not found (set EDGEADAPT_DATA)")
    classes = sorted(p for p in PHOTOS.iterdir() if p.is_dir())[::5][:16]
    paths = [sorted(c.glob("*.jpg"))[0] for c in classes]
    return np.stack([np.asarray(image.open(p).convert("RGB").resize((224, 224), image.BILINEAR)) for p in paths])


@pytest.fixture(scope="module")
def litert(photos) -> np.ndarray:
    """LiteRT's embeddings of ``photos`` (the uint8 output dequantised), one image at a time."""
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter",
                                             reason="LiteRT (ai-edge-litert, in the dev extra) is not installed")
    interpreter = interpreter_module.Interpreter(str(MODEL), num_threads=1)
    interpreter.allocate_tensors()
    source, output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = output["quantization"]
    embeddings = []
    for photo in photos:
        interpreter.set_tensor(source["index"], photo[None])
        interpreter.invoke()
        embeddings.append(scale * (interpreter.get_tensor(output["index"]).reshape(-1).astype(np.float64) - zero))
    return np.stack(embeddings)


def _embed(weights: dict[str, torch.Tensor], photos: np.ndarray, padding: str = "same",
           quantise_activations: bool = False) -> np.ndarray:
    """The features of ``mobilenet_v1_imagenet`` (``padding`` aside) holding ``weights``, of the uint8 ``photos``
    read as (q - 128) / 128; with ``quantise_activations``, every ReLU6 output (and the embedding) rounded to the
    file's uint8 grid, as the quantised model computes them."""
    model = MobileNetV1(ways=1, layout="full", padding=padding).eval()
    model.load_state_dict({**model.state_dict(), **weights})
    step = OUTPUT_STEP

    def grid(module, inputs, out):
        return torch.round(out / step).clamp(0, 255) * step

    hooks = [m.register_forward_hook(grid) for m in model.modules()
             if quantise_activations and isinstance(m, torch.nn.ReLU6)]
    x = (torch.from_numpy(photos).permute(0, 3, 1, 2).float() - 128) / 128
    with torch.no_grad():
        features = model.features(x)
    for hook in hooks:
        hook.remove()
    if quantise_activations:
        features = torch.round(features / step) * step
    return features.double().numpy()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _neighbours(embeddings: np.ndarray) -> np.ndarray:
    """Each photo's nearest other photo by cosine similarity."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)


def test_imported_embeddings_match_litert(imported, photos, litert):
    """The float backbone against LiteRT's uint8 model on 16 photos of 16 classes. Measured (x86-64, torch 2.13,
    ai-edge-litert 2.3.0): cosine similarity 0.99656 at worst (mean 0.99885), worst absolute difference 0.582 (mean
    0.028; embeddings reach 5.93), every photo's nearest neighbour the same. LiteRT rounds every activation to a
    uint8 grid of step 6/255 and we do not, so they cannot agree exactly: the bounds are cosine >= 0.99 per photo,
    difference <= 1.0 and the same nearest neighbours (a 2x margin and more on the measured figures)."""
    ours = _embed(imported.state_dict, photos)
    cosines, worst = _cosines(ours, litert), np.abs(ours - litert).max()
    print(f"{len(photos)} photos: min cosine {cosines.min():.5f}, mean {cosines.mean():.5f}, worst |diff| {worst:.3f}")
    assert ours.shape == (16, 1024)
    assert cosines.min() >= 0.99 and worst <= 1.0
    assert (_neighbours(ours) == _neighbours(litert)).all()


def test_the_mapping_is_exact_but_for_activation_rounding(imported, photos, litert):
    """With every activation rounded to the file's uint8 grid, as LiteRT computes, the embeddings agree to within a
    few grid steps (measured: cosine 0.99978 at worst, 4 steps at most, two thirds of the values identical), so the
    weights, biases, layout and padding are read right; TensorFlow's SAME padding is needed (PyTorch's symmetric
    padding of the same weights: cosine 0.81)."""
    rounded = _embed(imported.state_dict, photos, quantise_activations=True)
    assert _cosines(rounded, litert).min() >= 0.999
    assert np.abs(rounded - litert).max() <= 8 * OUTPUT_STEP
    assert _cosines(_embed(imported.state_dict, photos, padding="symmetric"), litert).min() < 0.95


def test_the_file_states_the_input_range_and_folds_batch_norm(imported):
    assert imported.value_range == IMAGENET_VALUE_RANGE == (-1.0, 127 / 128)
    assert imported.input_shape == (224, 224, 3)
    bn = torch.nn.BatchNorm2d(4).eval()
    bn.load_state_dict({k.removeprefix("features.5.1."): v[:4] if v.dim() else v
                        for k, v in imported.state_dict.items() if k.startswith("features.5.1.")})
    x = torch.randn(3, 4, 5, 5)
    assert torch.equal(bn(x), x + imported.state_dict["features.5.1.bias"][:4].view(1, -1, 1, 1))  # exactly


def test_the_command_writes_weights_that_pretrain_starts_from(imported, tmp_path, capsys):
    out = tmp_path / "weights.safetensors"
    assert main(["import-weights", str(MODEL), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert BACKBONE in printed and "value_range (-1.0, 0.9921875)" in printed
    model = build_backbone(BACKBONE, InputSpec((3, 224, 224), value_range=IMAGENET_VALUE_RANGE),
                           BackboneSettings(ways=7))
    assert start_from(model, out) == ["head.bias", "head.weight"]  # what --weights does: every feature weight fits
    for name, value in imported.state_dict.items():
        assert torch.equal(model.state_dict()[name], value), name
    assert model.config["padding"] == "same" and model.config["layout"] == "full"


def test_the_backbone_refuses_settings_the_weights_cannot_have():
    spec = InputSpec((3, 224, 224), value_range=IMAGENET_VALUE_RANGE)
    for settings in (BackboneSettings(ways=5, width=16), BackboneSettings(ways=5, activation="relu"),
                     BackboneSettings(ways=5, norm="group")):
        with pytest.raises(ConfigError, match=BACKBONE):
            build_backbone(BACKBONE, spec, settings)
    with pytest.raises(ConfigError, match=BACKBONE):
        build_backbone(BACKBONE, InputSpec((1, 224, 224)), BackboneSettings(ways=5))


def _patched_pooling(data: bytes) -> bytes:
    """``data`` with its AVERAGE_POOL_2D operator code turned into MAX_POOL_2D (17): an unsupported graph."""
    schema = pytest.importorskip("tflite")
    patched = bytearray(data)
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.OperatorCodesLength()):
        table = model.OperatorCodes(i)._tab
        if model.OperatorCodes(i).BuiltinCode() == 1:
            patched[table.Pos + table.Offset(4)] = 17  # deprecated_builtin_code (int8)
            struct.pack_into("<i", patched, table.Pos + table.Offset(10), 17)  # builtin_code (int32)
    return bytes(patched)


@needs_model
@pytest.mark.parametrize("make, message", [
    (lambda data: None, "cannot read the TFLite file"),
    (lambda data: b"PK\x03\x04 this is a zip, not a model" * 4, "not a TFLite model"),
    (lambda data: data[:1000], "corrupt or truncated TFLite file"),
    (lambda data: data[:-10], "corrupt or truncated TFLite file"),
    (_patched_pooling, "MAX_POOL_2D.*unsupported graph"),
], ids=["missing", "not-tflite", "truncated-header", "truncated-end", "unexpected-operator"])
def test_bad_files_are_one_line_checkpoint_errors(tmp_path, make, message):
    pytest.importorskip("tflite")
    path = tmp_path / "model.tflite"
    content = make(MODEL.read_bytes())
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        import_tflite(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_the_command_reports_a_bad_file_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.tflite").write_text("not a model")
    assert main(["import-weights", str(tmp_path / "notes.tflite"), "-o", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TFLite model" in err and not (tmp_path / "w.safetensors").exists()
    with pytest.raises(ConfigError, match="safetensors"):
        save_imported(tmp_path / "w.pt", {"x": torch.zeros(1)})


def _seeded_default() -> MobileNetV1:
    """A default MobileNetV1 (compact, symmetric padding) at width 8 from seed 0, batch norm statistics drawn too."""
    torch.manual_seed(0)
    model = MobileNetV1(ways=5, width=8).eval()
    g = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=g)
            module.running_var.uniform_(0.05, 0.2, generator=g)
    return model


def test_default_mobilenets_are_unchanged():
    """Without ``padding`` a MobileNet pads as before (``nn.Conv2d``, ``kernel // 2`` on every side) and computes
    the outputs it did (recorded from seed 0 when the option was added); ``"same"`` changes no parameter."""
    model = _seeded_default()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is torch.nn.Conv2d and m.padding == (m.kernel_size[0] // 2,) * 2 for m in convs)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = torch.tensor([[0.5351053, 1.3703614, -2.7559571, 0.9851797, 3.1563485],
                             [0.4908013, 1.5214896, -2.6279559, 0.7021405, 3.0575314]])
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=2e-5, rtol=0)
    torch.manual_seed(0)
    same = MobileNetV1(ways=5, width=8, padding="same")
    assert {k: v.shape for k, v in same.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert any(isinstance(m, SameConv2d) for m in same.modules())
    with pytest.raises(ConfigError, match="padding"):
        MobileNetV1(padding="valid")


def test_same_padding_pads_as_tensorflow():
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(7, 3, 2) == (1, 1) and same_padding(14, 3, 1) == (1, 1)
    conv = SameConv2d(1, 1, 3, stride=2, padding=0, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 4, 4)
    assert conv(x)[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]  # no padding top/left, one row/column bottom/right
    symmetric = torch.nn.functional.conv2d(x, conv.weight, stride=2, padding=1)
    assert symmetric[0, 0].tolist() == [[4.0, 6.0], [6.0, 9.0]]  # PyTorch's: one on every side


def _reseal(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_padding_round_trips_through_checkpoints(tmp_path):
    """The option is a constructor argument kept in ``config``; a checkpoint saved before it existed (no
    ``padding`` in its config) rebuilds with the default padding."""
    torch.manual_seed(0)
    model = MobileNetV1(ways=3, width=4, padding="same").eval()
    loaded, config = load_checkpoint(save_checkpoint(tmp_path / "same", model))
    assert config["model"]["config"]["padding"] == "same" and loaded.config == model.config
    x = torch.rand(2, 3, 30, 30)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    old = save_checkpoint(tmp_path / "old", _seeded_default())
    saved = json.loads((old / "config.json").read_text())
    del saved["model"]["config"]["padding"]
    (old / "config.json").write_text(json.dumps(saved))
    _reseal(old)
    rebuilt, _ = load_checkpoint(old)
    assert rebuilt.config["padding"] == "symmetric"
    with torch.no_grad():
        assert torch.equal(rebuilt(x), _seeded_default()(x))


def test_same_padding_exports_to_onnx(tmp_path):
    """The padded strided convolutions (stem and last block) export with the last block adapting, and onnxruntime
    computes what PyTorch does."""
    ort = pytest.importorskip("onnxruntime")
    from edgeadapt.export.onnx_graphs import GraphSpec, adapted_names, export_adapt, export_predict
    from edgeadapt.sdk import InnerLoop

    torch.manual_seed(0)
    inner = InnerLoop(MobileNetV1(ways=3, width=4, padding="same").eval(), 0.1, 1, scope="last_block",
                      head_init="prototypes", ways=3)
    spec = GraphSpec((3, 32, 32), max_ways=3, max_shots=2)
    export_adapt(inner, spec, tmp_path / "adapt.onnx")
    export_predict(inner, spec, tmp_path / "predict.onnx")
    adapt, predict = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"])
                      for f in ("adapt.onnx", "predict.onnx"))
    x, y, queries = torch.rand(6, 3, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2]), torch.rand(4, 3, 32, 32)
    masks = {"example_mask": np.ones(6, np.float32), "class_mask": np.ones(3, np.float32)}
    params = dict(zip(adapted_names(inner), adapt.run(None, {"support_features": x.numpy(), "support_y": y.numpy(), **masks})))
    expected = inner.inner_update(inner.params(), x, y)
    probabilities = predict.run(None, {"features": queries.numpy(), "class_mask": masks["class_mask"], **params})[0]
    with torch.no_grad():
        torch_probabilities = inner.predict_probabilities(queries, expected, torch.ones(3)).numpy()
    np.testing.assert_allclose(probabilities, torch_probabilities, atol=1e-4, rtol=0)


def test_per_channel_scales_dequantise_along_the_quantised_dimension():
    """The Coral file has one scale per tensor; int8 files of newer converters have one per output channel."""
    from edgeadapt.sdk.importers.tflite import _dequantise, _Tensor

    q = np.array([[1, 2], [3, 4]], np.int8)
    rows = _Tensor("w", "INT8", (2, 2), np.array([0.5, 2.0]), np.array([1, 0]), 0, q.tobytes())
    columns = _Tensor("w", "INT8", (2, 2), np.array([0.5, 2.0]), np.array([0, 0]), 1, q.tobytes())
    np.testing.assert_array_equal(_dequantise(rows, Path("x")), [[0.0, 0.5], [6.0, 8.0]])
    np.testing.assert_array_equal(_dequantise(columns, Path("x")), [[0.5, 4.0], [1.5, 8.0]])
    wrong = _Tensor("w", "INT8", (2, 2), np.array([0.5, 2.0, 1.0]), np.array([0, 0, 0]), 0, q.tobytes())
    with pytest.raises(CheckpointError, match="3 scales"):
        _dequantise(wrong, Path("x"))
