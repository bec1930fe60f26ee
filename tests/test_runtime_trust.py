"""What the runtime trusts: the manifest (schema, own checksum, limits), the files it lists (read once, hashed,
handed to the engine as those bytes, never from outside the folder) and, optionally, an Ed25519 signature."""

import json
import os
import shutil

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest, task
from edgeadapt.runtime.format.manifest import FORMAT_VERSION, canonical_bytes, check_manifest


@pytest.fixture
def copy(artifact, tmp_path):
    """A fresh copy of the test artifact."""
    return copy_with_manifest(artifact[0], tmp_path / "model", lambda m: None, reseal=False)


def test_an_edited_manifest_value_is_refused_by_its_own_checksum(artifact, tmp_path):
    edited = copy_with_manifest(artifact[0], tmp_path / "m", lambda m: m.update(uint8_scale=1 / 127), reseal=False)
    with pytest.raises(rt.ArtifactError, match="own checksum"):
        rt.load(edited)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(max_ways="4"), "max_ways must be an integer"),
    (lambda m: m.update(max_ways=1), "max_ways must be an integer in"),
    (lambda m: m.update(max_shots=True), "max_shots must be an integer"),
    (lambda m: m.update(uint8_scale=0), "uint8_scale must be a finite number"),
    (lambda m: m.update(input_shape=[1, 0, 28]), r"input_shape\[1\]"),
    (lambda m: m.update(scope="everything"), "scope must be one of"),
    (lambda m: m.update(head_init="random"), "head_init must be one of"),
    (lambda m: m.update(training=[1]), "training must be a JSON object"),
    (lambda m: m.pop("inner_lr"), "lacks the key 'inner_lr'"),
    (lambda m: m["onnx"].update(min_onnxruntime="newest"), "min_onnxruntime must be a version"),
    (lambda m: m["files"].update({"../escape": "0" * 64}), "a plain file name"),
    (lambda m: m["files"].update({"nul\0name": "0" * 64}), "a plain file name"),
    (lambda m: m["files"].update({"line\nbreak": "0" * 64}), "a plain file name"),
    (lambda m: m["files"].update({"adapt.onnx": "xyz"}), "sha256 hex digest"),
    (lambda m: m["files"].pop("selfcheck.npz"), "does not list"),
    (lambda m: m["adapted_parameters"].append(m["adapted_parameters"][0]), "distinct parameter names"),
    (lambda m: m.update(input={"range": [1.0, 0.0]}), "low < high"),
])
def test_manifest_values_are_schema_checked(artifact, tmp_path, edit, message):
    with pytest.raises(rt.ArtifactError, match=message):
        rt.load(copy_with_manifest(artifact[0], tmp_path / "m", edit, reseal=True))


def test_the_schema_takes_the_adaptation_scopes_and_head_initialisations(artifact):
    manifest = rt.load(artifact[0]).manifest
    for scope in ("all", "head", "last_block"):
        for head_init in ("learned", "zeros", "prototypes"):
            check_manifest({**manifest, "scope": scope, "head_init": head_init, "max_ways": 50,
                            "training": {"anything": [1, {"x": None}]}, "data": {}, "model": {}}, "m")


def test_another_format_version_is_refused_with_advice(artifact, tmp_path):
    old = copy_with_manifest(artifact[0], tmp_path / "m", lambda m: m.update(format_version=2), reseal=True)
    with pytest.raises(rt.ArtifactError, match=f"format_version 2 is not the version {FORMAT_VERSION}.*re-export"):
        rt.load(old)


def test_a_file_linked_from_outside_the_folder_is_refused(copy, tmp_path):
    outside = tmp_path / "outside.npz"
    shutil.copy(copy / "selfcheck.npz", outside)  # the same bytes: its hash matches
    (copy / "selfcheck.npz").unlink()
    (copy / "selfcheck.npz").symlink_to(outside)
    with pytest.raises(rt.ArtifactError, match="links outside the folder"):
        rt.load(copy)


def test_a_link_to_a_device_is_refused_without_reading_it(copy):
    (copy / "adapt.ort").unlink()
    (copy / "adapt.ort").symlink_to("/dev/zero")
    with pytest.raises(rt.ArtifactError, match="links outside"):
        rt.load(copy)


def test_a_fifo_is_refused_without_blocking(copy):
    (copy / "adapt.ort").unlink()
    os.mkfifo(copy / "adapt.ort")
    with pytest.raises(rt.ArtifactError, match="not a regular file"):
        rt.load(copy)


@pytest.mark.parametrize("content, message", [(b" " * (2 << 20), "more than the limit"),
                                              (b"[" * 100_000 + b"]" * 100_000, "nested"),
                                              (b"{\"a\": NaN}", "not valid JSON"),
                                              (b"\xff\xfe", "not valid JSON")])
def test_the_manifest_reader_has_limits(copy, content, message):
    (copy / "manifest.json").write_bytes(content)
    with pytest.raises(rt.ArtifactError, match=message):
        rt.load(copy)


def test_a_manifest_that_is_a_folder_is_refused(copy):
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").mkdir()
    with pytest.raises(rt.ArtifactError, match="not a regular file"):
        rt.load(copy)


def test_the_engine_gets_the_verified_bytes_not_the_path(artifact, monkeypatch):
    import onnxruntime

    given = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda model, *a, **k: given.append(model) or real(model, *a,
                                                                                                           **k))
    rt.load(artifact[0])
    assert given == [(artifact[0] / "adapt.onnx").read_bytes(), (artifact[0] / "predict.onnx").read_bytes()]


def test_engine_failures_are_edgeadapt_errors(artifact):
    learner = rt.load(artifact[0])
    x, y = task(2, 2)
    adapted = learner.adapt(x, y)
    wrong = {name: value[:1] for name, value in adapted._params.items()}
    with pytest.raises(rt.EngineError, match="predict"):
        rt.AdaptedLearner(learner, adapted.classes, wrong).predict_proba(x)


def test_threads_must_be_a_positive_integer(artifact):
    with pytest.raises(rt.InputError, match="threads"):
        rt.load(artifact[0], threads=0)


# --- signatures -----------------------------------------------------------------------------------------------

@pytest.fixture
def keys(tmp_path):
    """(private key PEM path, public key PEM path, another public key's raw bytes)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = tmp_path / "key.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "key.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    other = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                   serialization.PublicFormat.Raw)
    return private, public, other


def _sign(folder, private):
    from edgeadapt.runtime.format.signing import sign

    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.sig").write_bytes(sign(canonical_bytes(manifest), private))


def test_a_signed_artifact_loads_with_its_public_key(copy, keys):
    _sign(copy, keys[0])
    for form in (keys[1], keys[1].read_bytes(), str(keys[1])):
        x, y = task(2, 1)
        assert rt.load(copy, public_key=form).adapt(x, y).classes == ("class-0", "class-1")


def test_a_signature_by_another_key_is_refused(copy, keys):
    _sign(copy, keys[0])
    with pytest.raises(rt.ArtifactError, match="signature does not match"):
        rt.load(copy, public_key=keys[2])


def test_a_resealed_manifest_edit_breaks_the_signature(copy, keys, tmp_path):
    _sign(copy, keys[0])
    edited = copy_with_manifest(copy, tmp_path / "edited", lambda m: m.update(uint8_scale=1 / 127), reseal=True)
    with pytest.raises(rt.ArtifactError, match="signature does not match"):
        rt.load(edited, public_key=keys[1])
    rt.load(edited)  # without a key only the checksum is checked, which an editor can recompute


def test_a_missing_signature_is_refused_when_a_key_is_required(copy, keys):
    with pytest.raises(rt.ArtifactError, match="not signed"):
        rt.load(copy, public_key=keys[1])


def test_a_bad_public_key_is_an_input_error(copy, keys, tmp_path):
    _sign(copy, keys[0])
    with pytest.raises(rt.InputError, match="public_key"):
        rt.load(copy, public_key=b"not a key")
    with pytest.raises(rt.InputError, match="public_key"):
        rt.load(copy, public_key=tmp_path / "absent.pem")


def test_predictions_from_a_signed_artifact_are_unchanged(copy, keys, artifact):
    _sign(copy, keys[0])
    x, y = task(3, 2, seed=3)
    np.testing.assert_array_equal(rt.load(copy, public_key=keys[1]).adapt(x, y).predict_proba(x),
                                  rt.load(artifact[0]).adapt(x, y).predict_proba(x))
