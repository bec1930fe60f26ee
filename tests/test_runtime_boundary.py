"""One regression test per hole the reliability review found in the runtime's contract (the property suite,
test_runtime_contract.py, generates the families these come from)."""

import errno
import json
import os
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest, task, zip_members
from hostile import DEFLATED, Entry, npy_bytes, zip_bytes


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


@pytest.fixture
def saved(learner, tmp_path):
    x, y = task(2, 2)
    return learner.adapt(x, y).save(tmp_path / "s.npz")


def test_a_member_that_inflates_past_its_declared_size_is_refused_unread(learner, saved, tmp_path):
    members = zip_members(saved)
    bomb = zip_bytes([Entry(name, raw, DEFLATED, inflate=8 << 20 if name == "support/x.npy" else 0)
                      for name, raw in members.items()])
    (tmp_path / "bomb.npz").write_bytes(bomb)
    with pytest.raises(rt.ArtifactError, match="is compressed"):
        learner.restore(tmp_path / "bomb.npz")


def test_an_encrypted_member_is_refused(learner, saved, tmp_path):
    (tmp_path / "e.npz").write_bytes(zip_bytes([Entry(n, r, flags=1) for n, r in zip_members(saved).items()]))
    with pytest.raises(rt.ArtifactError, match="encrypted"):
        learner.restore(tmp_path / "e.npz")


def test_a_header_declaring_a_huge_shape_allocates_nothing(learner, saved, tmp_path):
    from edgeadapt.runtime.format.archive import read_npy

    with pytest.raises(rt.ArtifactError, match="shape"):
        read_npy(npy_bytes("<f4", False, (1 << 40, 1 << 20), b""), (None, 1 << 20), np.dtype("<f4"), "x")


@pytest.mark.parametrize("text", ['"\\ud800"', "NaN", "-Infinity", "1e999"])
def test_manifest_text_a_checksum_cannot_hash_is_an_artifact_error(artifact, tmp_path, text):
    copy = copy_with_manifest(artifact[0], tmp_path / "m", lambda m: None, reseal=False)
    manifest = (copy / "manifest.json").read_text()
    (copy / "manifest.json").write_text(manifest.rstrip()[:-1] + f', "note": {text}}}')
    with pytest.raises(rt.ArtifactError, match="not valid JSON|not valid Unicode|canonical"):
        rt.load(copy)


def test_labels_too_long_to_restore_are_refused_before_anything_is_saved(learner, tmp_path):
    x, _ = task(2, 1)
    with pytest.raises(rt.InputError, match="257 characters; labels hold at most 256"):
        learner.adapt(x, ["x" * 257, "y"])
    adapted = learner.adapt(x, ["\U0001F600" * 256, "y"])  # the longest label, escaped to 12 bytes a character
    assert learner.restore(adapted.save(tmp_path / "s.npz")).classes == adapted.classes


@pytest.mark.parametrize("label, error", [(complex("nan"), rt.InputTypeError), (np.datetime64("NaT"), rt.InputTypeError),
                                          (float("nan"), rt.InputError), (np.float32("inf"), rt.InputError),
                                          ("\udc80", rt.InputError), (2 ** 64, rt.InputError)])
def test_labels_not_equal_to_themselves_or_not_storable_are_refused(learner, label, error):
    x, _ = task(2, 1)
    with pytest.raises(error, match=r"support_y\[0\]"):
        learner.adapt(x, [label, "other"])


def test_numpy_labels_become_the_values_they_hold(learner, tmp_path):
    x, _ = task(2, 2)
    adapted = learner.adapt(x, np.array(["b", "b", "a", "a"]))
    assert adapted.classes == ("a", "b") and all(type(c) is str for c in adapted.classes)
    assert learner.restore(adapted.save(tmp_path / "s.npz")).classes == ("a", "b")


@pytest.mark.parametrize("value, error", [(None, rt.InputTypeError), (3, rt.InputTypeError), (b"s.npz", rt.InputTypeError),
                                          ("", rt.InputError), ("a\0b", rt.InputError)])
def test_path_arguments_have_one_clear_error(learner, saved, value, error):
    adapted = learner.restore(saved)
    for call in (lambda: rt.load(value), lambda: learner.restore(value), lambda: adapted.save(value)):
        with pytest.raises(error, match="path"):
            call()


@pytest.mark.parametrize("threads, error", [(10 ** 6, rt.InputError), (2 ** 31, rt.InputError), (0, rt.InputError),
                                            ("2", rt.InputTypeError), (True, rt.InputTypeError)])
def test_thread_counts_onnxruntime_cannot_take_are_refused(artifact, threads, error):
    with pytest.raises(error, match="threads"):
        rt.load(artifact[0], threads=threads)


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied"),
                                          (errno.EROFS, "read-only"), (errno.ENAMETOOLONG, "too long")])
def test_operating_system_errors_while_saving_are_storage_errors(learner, saved, code, reason):
    previous = saved.read_bytes()
    adapted = learner.restore(saved)

    def fail(*args):
        raise OSError(code, os.strerror(code))

    with mock.patch("os.replace", fail), pytest.raises(rt.StorageError, match=reason) as caught:
        adapted.save(saved)
    assert isinstance(caught.value, OSError) and caught.value.__cause__.errno == code
    assert saved.read_bytes() == previous and os.listdir(saved.parent) == [saved.name]


def test_a_folder_in_the_way_and_a_file_for_a_folder_are_storage_errors(learner, saved, tmp_path):
    adapted = learner.restore(saved)
    (tmp_path / "folder").mkdir()
    with pytest.raises(rt.StorageError, match="a folder is in the way"):
        adapted.save(tmp_path / "folder")
    with pytest.raises(rt.StorageError, match="cannot write"):
        adapted.save(saved / "child.npz")


def test_save_checks_what_it_writes_with_restores_reader(learner, saved, tmp_path):
    adapted = learner.restore(saved)
    with mock.patch("edgeadapt.runtime.state.meta_limit", lambda spec: 64):
        with pytest.raises(rt.InputError, match="metadata would take .* use fewer or shorter labels"):
            adapted.save(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()
    from edgeadapt.runtime import state

    limits = state.member_limits
    with mock.patch("edgeadapt.runtime.state.member_limits", lambda spec: {n: v // 2 for n, v in limits(spec).items()}):
        with pytest.raises(rt.InputError, match="cannot be saved, restore would refuse it: .* allows at most"):
            adapted.save(tmp_path / "new.npz")
    assert not (tmp_path / "new.npz").exists()
    with zipfile.ZipFile(saved) as z:
        assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_STORED}
        assert json.loads(z.read("meta.json"))["format"] == 3
    assert Path(saved).stat().st_size > 0
