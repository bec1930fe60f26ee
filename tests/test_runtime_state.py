"""Saved states (format 3, and format 2 without examples): every array checked for dtype, byte order, shape and finiteness, the class list against the
artifact, sizes before inflating; checksums over the exact stored bytes; atomic writes that clean up after
themselves and fit long file names."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import npy, task, write_zip, zip_members
from edgeadapt.runtime.format.files import sha256_bytes
from edgeadapt.runtime.format.manifest import sealed


@pytest.fixture(scope="module")
def adapted(artifact):
    x, y = task(3, 2, seed=5)
    return rt.load(artifact[0]).adapt(x, y)


def _state(path, adapted, edit=lambda arrays, meta: None):
    """A correctly checksummed state of ``adapted`` in format 2 (parameters only) whose arrays and metadata ``edit``
    may change first."""
    arrays = {name: value.copy() for name, value in adapted._params.items()}
    meta = {"format": 2, "artifact": adapted._learner._identity, "classes": list(adapted.classes)}
    edit(arrays, meta)
    members = {f"{name}.npy": npy(value) for name, value in arrays.items()}
    meta["arrays"] = {name: sha256_bytes(data) for name, data in members.items()}
    members["meta.json"] = json.dumps(sealed(meta, "sha256")).encode()
    return write_zip(path, members)

def test_a_well_formed_state_restores(adapted, tmp_path):
    restored = adapted._learner.restore(_state(tmp_path / "s.npz", adapted))
    x, _ = task(3, 2, seed=5)
    np.testing.assert_array_equal(restored.predict_proba(x), adapted.predict_proba(x))


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: a.update({k: v.astype(">f4") for k, v in a.items()}), "dtype >f4.*little-endian"),
    (lambda a, m: a.update({k: v.astype(np.float64) for k, v in a.items()}), "allows at most"),  # twice the size
    (lambda a, m: a.update({"head.bias": a["head.bias"][:2]}), "shape"),
    (lambda a, m: a["head.bias"].__setitem__(0, np.nan), "NaN"),
    (lambda a, m: a["head.weight"].__setitem__(0, np.inf), "NaN or infinite"),
    (lambda a, m: m.update(classes=[]), "0 classes"),
    (lambda a, m: m.update(classes=["a"]), "1 classes"),
    (lambda a, m: m.update(classes=["a", "b", "c", "d", "e"]), "5 classes; this artifact takes 2..4"),
    (lambda a, m: m.update(classes=["a", "a", "b"]), "repeats a class"),
    (lambda a, m: m.update(classes=["a", {"b": 1}]), "must be a plain string, integer or finite float"),
    (lambda a, m: m.update(classes="abc"), "must be a list"),
    (lambda a, m: m.update(artifact="0" * 64), "different artifact"),
    (lambda a, m: m.update(format=4), "state format 4; this runtime reads formats 2, 3"),
    (lambda a, m: a.pop("head.bias"), "expected"),
])
def test_invalid_states_are_refused(adapted, tmp_path, edit, message):
    with pytest.raises(rt.ArtifactError, match=message):
        adapted._learner.restore(_state(tmp_path / "s.npz", adapted, edit))


def test_the_checksum_covers_the_exact_stored_bytes(adapted, tmp_path):
    members = zip_members(adapted.save(tmp_path / "s.npz"))
    big_endian = npy(np.lib.format.read_array(io.BytesIO(members["head.bias.npy"])).astype(">f4"))
    write_zip(tmp_path / "swapped.npz", {**members, "head.bias.npy": big_endian})  # same values, other bytes
    with pytest.raises(rt.ArtifactError, match="checksum"):
        adapted._learner.restore(tmp_path / "swapped.npz")


def test_compressed_members_are_refused_before_inflating(adapted, tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.json", b"{}")
        for name in adapted._params:
            z.writestr(f"{name}.npy", b"\0" * (1 << 20))  # 1 MB each, 1 KB compressed
    assert path.stat().st_size < 100_000
    with pytest.raises(rt.ArtifactError, match="is compressed .* refused unread"):
        adapted._learner.restore(path)


def test_a_state_of_the_previous_format_gets_a_clear_error(adapted, tmp_path):
    np.savez(tmp_path / "old.npz", __meta__=np.array(json.dumps({"format": 1})), **adapted._params)
    with pytest.raises(rt.ArtifactError, match="state format 1; this runtime reads formats 2, 3: adapt again"):
        adapted._learner.restore(tmp_path / "old.npz")


def test_a_state_of_format_2_predicts_but_cannot_be_updated(adapted, tmp_path):
    restored = adapted._learner.restore(_state(tmp_path / "s.npz", adapted))
    x, _ = task(3, 2, seed=5)
    np.testing.assert_array_equal(restored.predict_proba(x), adapted.predict_proba(x))
    assert restored.examples == 0
    with pytest.raises(rt.ArtifactError, match="keeps no examples to re-adapt from"):
        restored.update(x[:1], ["class-0"])
    resaved = adapted._learner.restore(restored.save(tmp_path / "again.npz"))  # format 3 without examples
    np.testing.assert_array_equal(resaved.predict_proba(x), adapted.predict_proba(x))
    assert resaved.examples == 0


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: os.mkfifo(p), lambda p: p.write_bytes(b"PK")])
def test_unreadable_state_paths_are_artifact_errors(adapted, tmp_path, make):
    make(tmp_path / "state.npz")
    with pytest.raises(rt.ArtifactError):
        adapted._learner.restore(tmp_path / "state.npz")


def test_long_file_names_save_and_restore(adapted, tmp_path):
    path = adapted.save(tmp_path / ("s" * 246 + ".npz"))  # 250 characters: NAME_MAX is 255
    assert adapted._learner.restore(path).classes == adapted.classes


SAVING_FOREVER = """
import sys
import numpy as np
import edgeadapt.runtime as rt
learner = rt.load(sys.argv[1])
x = np.random.default_rng(0).random((4, *learner.input_shape), dtype=np.float32)
states = [learner.adapt(x, ["a", "a", "b", "b"]), learner.adapt(x, ["c", "c", "d", "d"])]
print("ready", flush=True)
i = 0
while True:
    states[i % 2].save(sys.argv[2])
    i += 1
"""


def test_a_save_killed_at_any_moment_leaves_one_complete_state(artifact, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path, learner = tmp_path / "s.npz", rt.load(artifact[0])
    for delay in (0.0, 0.003, 0.011, 0.029, 0.05):
        child = subprocess.Popen([sys.executable, "-c", SAVING_FOREVER, str(artifact[0]), str(path)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if path.exists():
            assert learner.restore(path).classes in (("a", "b"), ("c", "d"))
    assert path.exists()


def test_save_removes_temporary_files_of_killed_saves_only(adapted, tmp_path):
    dead = tmp_path / ".edgeadapt-99999999-0a1b.tmp"  # no such process
    mine = tmp_path / f".edgeadapt-{os.getpid()}-0a1b.tmp"  # a save in flight in this process
    dead.write_bytes(b"partial")
    mine.write_bytes(b"partial")
    adapted.save(tmp_path / "s.npz")
    assert not dead.exists() and mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.npz", mine.name])


def test_saved_states_get_the_usual_permissions(adapted, tmp_path):
    old = os.umask(0o022)
    try:
        path = adapted.save(tmp_path / "s.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("label", [("a", 1), 1 + 2j, b"bytes"])
def test_labels_a_state_cannot_hold_are_refused_by_adapt(artifact, label):
    x, _ = task(2, 1)
    with pytest.raises(rt.InputTypeError, match=r"support_y\[0\] is of type .*; labels are strings"):
        rt.load(artifact[0]).adapt(x, [label, "other"])
