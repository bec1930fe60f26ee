"""Artifacts whose scope leaves layers frozen: those layers are the embed program, stored once; the runtime computes
the same through embed + adapt + predict as PyTorch's inner loop on the whole model, and Learner.embed's features
stand in for inputs."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

import edgeadapt.runtime as rt
from artifacts import task
from edgeadapt.export import export_artifact
from edgeadapt.runtime.format.files import sha256_file
from edgeadapt.runtime.format.manifest import manifest_text, sealed
from edgeadapt.sdk import Conv4, InnerLoop, save_checkpoint
from edgeadapt.sdk.errors import ConfigError


@pytest.fixture(scope="module", params=["head", "last_block"])
def exported(request, tmp_path_factory):
    """(artifact, the whole model's inner loop) of a 4-way Conv4 adapting ``scope`` from a prototype head."""
    scope = request.param
    folder = tmp_path_factory.mktemp(f"embed-{scope}")
    torch.manual_seed(0)
    model = Conv4(ways=4, hidden=16).eval()
    training = {"algorithm": "reptile", "inner_lr": 0.5, "inner_steps": 2, "scope": scope, "loss": "cross_entropy",
                "head_init": "prototypes", "head_scale": 0.5}
    save_checkpoint(folder / "ckpt", model, {"training": training})
    export_artifact(folder / "ckpt", folder / "model", max_ways=4, max_shots=3, executorch=False)
    inner = InnerLoop(model, 0.5, 2, scope=scope, head_init="prototypes", ways=4, head_scale=0.5)
    return folder / "model", inner


def test_the_frozen_layers_are_stored_once(exported):
    path, inner = exported
    manifest = json.loads((path / "manifest.json").read_text())
    assert "embed.onnx" in manifest["files"] and manifest["feature_shape"] != manifest["input_shape"]
    stored = {name: sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(path / name).graph.initializer)
              for name in ("embed.onnx", "adapt.onnx", "predict.onnx")}
    weights = sum(t.numel() * 4 for t in inner.model.features.state_dict().values() if t.is_floating_point())
    frozen = sum(p.numel() * 4 for n, p in inner.params().items() if not inner.is_adapted(n))
    assert stored["embed.onnx"] >= 0.95 * frozen
    assert stored["predict.onnx"] <= 256  # everything after embed adapts: a few scalar constants, no weights
    assert sum(stored.values()) <= 1.1 * weights


def test_the_runtime_computes_what_pytorch_computes(exported):
    path, inner = exported
    learner = rt.load(path, threads=1)
    assert learner.self_test() <= 1e-4
    x, labels = task(4, 3, seed=1)
    queries = task(4, 2, seed=2)[0]
    y = torch.tensor([int(label.split("-")[1]) for label in labels])
    expected = inner.probabilities(torch.from_numpy(x), y, torch.from_numpy(queries)).numpy()
    np.testing.assert_allclose(learner.adapt(x, labels).predict_proba(queries), expected, atol=1e-5, rtol=0)


def test_embeddings_stand_in_for_inputs(exported, tmp_path):
    learner = rt.load(exported[0], threads=1)
    x, labels = task(4, 3, seed=3)
    queries = task(4, 2, seed=4)[0]
    from_inputs = learner.adapt(x, labels)
    embedded = learner.embed(np.concatenate([x, queries]))
    assert len(embedded) == len(x) + len(queries)
    assert embedded.features.shape[1:] == tuple(learner.manifest["feature_shape"])
    from_embeddings = learner.adapt(embedded[: len(x)], labels)
    expected = from_inputs.predict_proba(queries)
    np.testing.assert_array_equal(from_embeddings.predict_proba(embedded[len(x):]), expected)
    np.testing.assert_array_equal(from_embeddings.predict_proba(queries), expected)
    assert from_embeddings.examples == 0 and from_inputs.examples == len(x)
    with pytest.raises(rt.ArtifactError, match="adapted from embeddings"):
        from_embeddings.update(x[:1], labels[:1])
    restored = learner.restore(from_embeddings.save(tmp_path / "state.npz"))
    np.testing.assert_array_equal(restored.predict_proba(embedded[len(x):]), expected)


def test_bad_embeddings_are_input_errors(exported, artifact):
    learner, other = rt.load(exported[0], threads=1), rt.load(artifact[0], threads=1)
    x, labels = task(4, 3, seed=5)
    embedded = learner.embed(x)
    with pytest.raises(rt.InputError, match="another artifact"):
        other.adapt(other.embed(x), labels).predict_proba(embedded)
    with pytest.raises(rt.InputError, match="another artifact"):
        other.adapt(embedded, labels)
    with pytest.raises(rt.InputError, match="labels"):
        learner.adapt(embedded, labels[:-1])
    with pytest.raises(rt.InputError, match="single index"):
        embedded[0]
    with pytest.raises(rt.InputError, match="cannot pick rows"):
        embedded[[len(x)]]
    with pytest.raises(rt.InputError, match="empty"):
        learner.adapt(embedded[:0], [])


def test_an_artifact_adapting_every_layer_embeds_as_the_identity(artifact):
    learner = rt.load(artifact[0], threads=1)
    assert "embed.onnx" not in learner.manifest["files"]
    assert learner.manifest["feature_shape"] == learner.manifest["input_shape"]
    x, labels = task(4, 2, seed=6)
    np.testing.assert_array_equal(learner.embed(x).features, x)
    np.testing.assert_array_equal(learner.adapt(learner.embed(x), labels).predict_proba(x),
                                  learner.adapt(x, labels).predict_proba(x))


def _earlier_export(artifact, folder):
    """A copy of ``artifact`` whose adapt.onnx differs in bytes, not in what it computes (as an export by an earlier
    edgeadapt would), its manifest resealed: another artifact to the runtime."""
    shutil.copytree(artifact, folder)
    graph = onnx.load(folder / "adapt.onnx")
    graph.doc_string = "exported by an earlier edgeadapt"
    onnx.save(graph, folder / "adapt.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["adapt.onnx"] = sha256_file(folder / "adapt.onnx")
    (folder / "manifest.json").write_text(manifest_text(sealed(manifest)))
    return folder


def test_a_re_export_that_replaces_an_artifact_restores_its_states(exported, tmp_path):
    """--replaces: states saved with the old artifact restore in the new one, which must compute the same."""
    old = _earlier_export(exported[0], tmp_path / "old")
    state = rt.load(old).adapt(*task(4, 2, seed=7)).save(tmp_path / "state.npz")
    checkpoint = exported[0].parent / "ckpt"
    with pytest.raises(rt.ArtifactError, match="different artifact"):  # another artifact, not declared to replace it
        rt.load(exported[0]).restore(state)
    new = export_artifact(checkpoint, tmp_path / "new", max_ways=4, max_shots=3, executorch=False, replaces=old)
    assert rt.load(new).manifest["restores_states_of"] == [rt.load(old).manifest["files"]["adapt.onnx"]]
    queries = task(4, 1, seed=8)[0]
    restored = rt.load(new).restore(state)
    np.testing.assert_allclose(restored.predict_proba(queries), rt.load(old).restore(state).predict_proba(queries),
                               atol=1e-6, rtol=0)
    assert rt.load(new).restore(restored.save(tmp_path / "again.npz")).classes == restored.classes  # saved as new's
    with pytest.raises(ConfigError, match="does not compute what that artifact computes"):
        export_artifact(checkpoint, tmp_path / "steps", max_ways=4, max_shots=3, executorch=False, replaces=old,
                        inner_steps=5)
    assert not (tmp_path / "steps").exists()
    with pytest.raises(ConfigError, match="not an artifact folder"):
        export_artifact(checkpoint, tmp_path / "none", max_ways=4, max_shots=3, executorch=False, replaces=tmp_path)
