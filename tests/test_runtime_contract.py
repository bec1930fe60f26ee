"""The runtime's contract under generated hostile input (Hypothesis): every call ends in a correct, finite result or
an EdgeAdaptError; a saved state is never lost; restore's memory stays within 2x the largest legitimate state.

The classes of input: zip members compressed, encrypted or with sizes that lie (a small file that would inflate to
many megabytes), unknown, duplicated or extra directory entries, trailing bytes; .npy headers declaring huge or
wrong shapes, other dtypes, versions and lengths; text a checksum cannot hash (lone surrogates, non-finite
literals) in manifests and state metadata; labels of every kind; path arguments; operating-system failures injected
into saves; thread counts and engine names.

``EDGEADAPT_CONTRACT_EXAMPLES=N`` runs N examples per property (default 40); with ``EDGEADAPT_CONTRACT_REPORT=FILE``
the tally of cases (refused, accepted and checked) and the largest memory ratio are written to FILE as JSON
(``benchmarks/runtime_contract.py`` runs it so).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest, task
from edgeadapt.runtime.format.files import sha256_bytes
from edgeadapt.runtime.format.manifest import sealed
from edgeadapt.runtime.labels import MAX_LABEL_CHARS
from hostile import BZIP2, DEFLATED, LZMA, ODD_LABELS, PLAIN_LABELS, Entry, npy_bytes, zip_bytes

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "omniglot-conv4"
EXAMPLES = int(os.environ.get("EDGEADAPT_CONTRACT_EXAMPLES", "40"))
CONTRACT = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MEMORY_RATIO = 2.0  # restore's peak traced memory / the largest legitimate state's bytes
TALLY: Counter = Counter()
PEAK = {"ratio": 0.0}


@pytest.fixture(scope="module", autouse=True)
def report():
    """Write the tally where EDGEADAPT_CONTRACT_REPORT says, after the module's tests."""
    yield
    if os.environ.get("EDGEADAPT_CONTRACT_REPORT"):
        Path(os.environ["EDGEADAPT_CONTRACT_REPORT"]).write_text(json.dumps(
            {"examples": EXAMPLES, "cases": {f"{t}/{o}": n for (t, o), n in sorted(TALLY.items())},
             "peak_memory_ratio": PEAK["ratio"], "memory_limit_ratio": MEMORY_RATIO}, indent=2))


def attempt(test: str, call):
    """``call()``'s result, or None if it raised an EdgeAdaptError; anything else raised fails the test."""
    try:
        result = call()
    except rt.EdgeAdaptError:
        TALLY[test, "refused"] += 1
        return None
    TALLY[test, "accepted"] += 1
    return result


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


@pytest.fixture(scope="module")
def shipped():
    """The shipped model: its states are the size a device keeps (the test artifact's are a few KB, where Python's
    fixed costs would decide any memory ratio)."""
    return rt.load(SHIPPED)


@pytest.fixture(scope="module")
def legit(shipped, tmp_path_factory):
    """A saved state of the shipped model: its members, the learner it restores to, queries, and the largest
    legitimate state's bytes (every class at max_shots examples, every label MAX_LABEL_CHARS long)."""
    folder, learner = tmp_path_factory.mktemp("legit"), shipped
    ways, shots = learner.max_ways, learner.max_shots
    x = np.random.default_rng(0).random((ways * shots, *learner.input_shape), dtype=np.float32)
    longest = [("\U0001F600" * (MAX_LABEL_CHARS - 3)) + f"{i:03d}" for i in range(ways)]
    largest = learner.adapt(x, [longest[i // shots] for i in range(ways * shots)]).save(folder / "largest.npz")
    adapted = learner.adapt(x[: 2 * shots], ["a"] * shots + ["b"] * shots)
    path = adapted.save(folder / "state.npz")
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    queries = np.random.default_rng(1).random((3, *learner.input_shape), dtype=np.float32)
    return {"members": members, "adapted": adapted, "queries": queries, "largest": largest.stat().st_size}


def restore_within_memory(test: str, learner, legit, data: bytes):
    """Restore ``data`` (as a file) under tracemalloc: None if refused, else the restored learner, which must
    predict exactly as the saved one; either way its peak memory is within MEMORY_RATIO of the largest state."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.npz"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            restored = attempt(test, lambda: learner.restore(path))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    ratio = peak / legit["largest"]
    PEAK["ratio"] = max(PEAK["ratio"], ratio)
    assert ratio <= MEMORY_RATIO, f"restore peaked at {peak} bytes, {ratio:.2f}x the largest legitimate state"
    if restored is not None:
        assert restored.classes == legit["adapted"].classes
        np.testing.assert_array_equal(restored.predict_proba(legit["queries"]),
                                      legit["adapted"].predict_proba(legit["queries"]))
    return restored


METHODS = st.sampled_from([DEFLATED, BZIP2, LZMA])
ATTACKS = ("compressed", "inflating lie", "size lie", "crc lie", "encrypted", "flags", "unknown name",
           "duplicate name", "many entries", "trailing bytes", "comment", "missing member", "none")  # applied in order


@CONTRACT
@given(data=st.data(), attacks=st.lists(st.sampled_from(ATTACKS), min_size=1, max_size=2))
def test_hostile_archives_are_refused_within_bounded_memory(shipped, legit, data, attacks):
    entries = [Entry(name, content) for name, content in legit["members"].items()]
    target = entries[data.draw(st.integers(0, len(entries) - 1))]
    extra = {"comment": b"", "trailing": b"", "extra_entries": 0}
    for attack in sorted(set(attacks), key=ATTACKS.index):
        if attack == "compressed":
            target.method = data.draw(METHODS)
        elif attack == "inflating lie":  # declares the true size and checksum; inflates to megabytes more
            target.method, target.inflate = data.draw(METHODS), data.draw(st.sampled_from([1 << 20, 8 << 20]))
        elif attack == "size lie":
            target.declared_size = data.draw(st.one_of(st.integers(0, len(target.content) - 1),
                                                       st.integers(len(target.content) + 1, 2 ** 32 - 1)))
        elif attack == "crc lie":
            target.declared_crc = data.draw(st.integers(0, 2 ** 32 - 1))
        elif attack in ("encrypted", "flags"):
            target.flags |= 1 if attack == "encrypted" else data.draw(st.sampled_from([0x8, 0x20, 0x40, 0x800]))
        elif attack == "unknown name":
            target.name = data.draw(st.sampled_from(["../" + target.name, target.name + "x", "/etc/passwd", "a\\b"]))
        elif attack == "duplicate name":
            entries.append(Entry(target.name, target.content))
        elif attack == "missing member":
            entries = [entry for entry in entries if entry.name != target.name]
        elif attack == "many entries":
            extra["extra_entries"] = data.draw(st.sampled_from([1, 100, 20000]))
        elif attack in ("trailing bytes", "comment"):
            extra[attack.split()[0]] = data.draw(st.binary(min_size=1, max_size=64))
    data_bytes = zip_bytes(entries, extra["comment"], extra["trailing"], extra["extra_entries"])
    restored = restore_within_memory("archives", shipped, legit, data_bytes)
    assert restored is None or set(attacks) <= {"none", "flags"}, f"{attacks} accepted"


SHAPES = st.one_of(st.just("legit"), st.tuples(st.integers(0, 2 ** 62)), st.tuples(st.integers(1, 64), st.integers(-3, 2 ** 40)),
                   st.lists(st.integers(0, 9), max_size=9).map(tuple))
DESCRS = st.sampled_from(["<f4", "<f4", ">f4", "<f8", "<f2", "|O", "<i8", "|V16", "|b1", "<U4", "<c8"])


@CONTRACT
@given(data=st.data(), descr=DESCRS, fortran=st.booleans(), shape=SHAPES, version=st.sampled_from([1, 2, 3]),
       pad=st.sampled_from([0, 0, 5000, 70000]), cut=st.integers(-8, 8))
def test_hostile_array_headers_are_refused_before_allocation(shipped, legit, data, descr, fortran, shape, version,
                                                             pad, cut):
    members = dict(legit["members"])
    name = data.draw(st.sampled_from(sorted(n for n in members if n != "meta.json")))
    array = np.lib.format.read_array(io.BytesIO(members[name]))
    shape = array.shape if shape == "legit" else shape
    body = array.tobytes()
    body = body[: max(0, len(body) + cut)] if cut < 0 else body + b"\0" * cut
    members[name] = npy_bytes(descr, fortran, shape, body, version, min(pad, 5000) if version == 1 else pad)
    restore_within_memory("array headers", shipped, legit, _resealed(members))


def _resealed(members: dict[str, bytes], meta_edit=lambda meta: None) -> bytes:
    """The members as a stored zip, with the metadata's digests and checksum recomputed."""
    meta = json.loads(members["meta.json"])
    meta["arrays"] = {name: sha256_bytes(raw) for name, raw in members.items() if name != "meta.json"}
    meta_edit(meta)
    meta = sealed({k: v for k, v in meta.items() if k != "sha256"}, "sha256")
    return zip_bytes([Entry(name, raw) for name, raw in {**members, "meta.json": json.dumps(meta).encode()}.items()])


UNHASHABLE_TEXT = st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\udc80\\ud800"', "NaN", "Infinity", "-Infinity",
                                   "1e999", "-1e999", "1" * 5000, "[" * 5000 + "]" * 5000, '"\\u0000"'])


@CONTRACT
@given(value=UNHASHABLE_TEXT, where=st.sampled_from(["classes", "artifact", "extra", "examples"]))
def test_state_metadata_that_cannot_be_hashed_is_refused(shipped, legit, value, where):
    members = dict(legit["members"])
    meta = json.loads(members["meta.json"])
    text = json.dumps(meta).replace(f'"{where}": ', f'"{where}": {value}, "was": ', 1) if where in meta else \
        json.dumps(meta)[:-1] + f', "{where}": {value}}}'
    members["meta.json"] = text.encode()
    restore_within_memory("state metadata text", shipped, legit, zip_bytes([Entry(n, r) for n, r in members.items()]))


@settings(CONTRACT, max_examples=max(10, EXAMPLES // 4))
@given(value=UNHASHABLE_TEXT, key=st.sampled_from(["training", "data", "input_dtype", "inner_lr", "new_key"]))
def test_manifest_text_that_cannot_be_hashed_is_refused(artifact, value, key):
    with tempfile.TemporaryDirectory() as folder:
        copy = copy_with_manifest(artifact[0], Path(folder) / "m", lambda m: None, reseal=False)
        manifest = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(manifest.rstrip()[:-1] + f', "{key}": {value}}}')  # the last one wins
        assert attempt("manifest text", lambda: rt.load(copy)) is None


PLAIN = st.one_of(st.sampled_from(PLAIN_LABELS), st.integers(-2 ** 63, 2 ** 63 - 1), st.text(max_size=4),
                  st.floats(allow_nan=False, allow_infinity=False))
ODD = st.one_of(st.sampled_from(ODD_LABELS), st.integers(2 ** 63, 2 ** 70), st.floats().filter(lambda v: v != v),
                st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2), st.decimals(), st.complex_numbers())


@CONTRACT
@given(data=st.data(), shots=st.integers(1, 3), update=st.lists(st.one_of(PLAIN, ODD), min_size=1, max_size=3))
def test_labels_follow_one_rule_from_adapt_through_save_and_restore(learner, data, shots, update):
    pool = data.draw(st.lists(PLAIN, min_size=2, max_size=4, unique_by=_plain))
    if data.draw(st.booleans()):  # half the tasks have one label of another kind
        pool[data.draw(st.integers(0, len(pool) - 1))] = data.draw(ODD)
    y = [label for label in pool for _ in range(shots)]
    x = np.random.default_rng(len(y)).random((len(y), *learner.input_shape), dtype=np.float32)
    adapted = attempt("labels: adapt", lambda: learner.adapt(x, y))
    if adapted is None:
        assert not all(map(_is_plain, pool)) or len({_plain(v) for v in pool}) < 2, pool
        return
    assert all(map(_is_plain, pool)), f"adapt accepted {pool}"
    assert len(adapted.classes) == len({_plain(v) for v in pool}) and all(
        type(c) in (str, int, float, bool) for c in adapted.classes)
    queries = x[:2]
    with tempfile.TemporaryDirectory() as folder:
        restored = learner.restore(adapted.save(Path(folder) / "s.npz"))  # what adapt accepts, save and restore keep
    assert restored.classes == adapted.classes and [type(c) for c in restored.classes] == [
        type(c) for c in adapted.classes]
    np.testing.assert_array_equal(restored.predict_proba(queries), adapted.predict_proba(queries))
    newer = attempt("labels: update", lambda: restored.update(x[: len(update)], update))
    if newer is not None:
        assert all(map(_is_plain, update)) and set(newer.classes) >= set(restored.classes)
        assert newer.examples <= learner.max_ways * learner.max_shots


def _is_plain(value) -> bool:
    """The label rule, restated as the test's oracle."""
    value = _plain(value)
    if type(value) is str:
        return len(value) <= MAX_LABEL_CHARS and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if type(value) in (int, bool):
        return -(2 ** 63) <= value < 2 ** 63
    return type(value) is float and math.isfinite(value)


def _plain(value):
    kinds = (np.bool_, np.integer, np.floating, np.str_)
    return value.item() if isinstance(value, np.generic) and isinstance(value, kinds) else value


PATHS = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.lists(st.text(max_size=2), max_size=2),
                  st.sampled_from(["", "a\0b", "folder", "folder/../folder", "file/child.npz", "x" * 300 + ".npz",
                                   "missing/deeper/s.npz", "s.npz", "./s.npz"]))


@CONTRACT
@given(value=PATHS, as_path=st.booleans())
def test_path_arguments_are_checked_and_a_failed_save_loses_nothing(shipped, legit, value, as_path):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "folder").mkdir()
        (root / "file").write_bytes(b"not a folder")
        previous = legit["adapted"].save(root / "s.npz").read_bytes()
        target = root / value if isinstance(value, str) and value else value
        target = target if as_path or not isinstance(target, Path) else str(target)
        saved = attempt("paths: save", lambda: legit["adapted"].save(target))
        if saved is None:
            assert (root / "s.npz").read_bytes() == previous
        else:
            assert shipped.restore(saved).classes == legit["adapted"].classes
        restored = attempt("paths: restore", lambda: shipped.restore(target))
        assert restored is None or restored.classes == legit["adapted"].classes
        assert attempt("paths: load", lambda: rt.load(target)) is None
        assert not [p for p in root.rglob(".edgeadapt-*")], "a temporary file was left behind"


FAILURES = st.sampled_from([errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                            errno.EISDIR, errno.ENAMETOOLONG])
CALLS = st.sampled_from(["os.replace", "os.fsync", "os.open", "pathlib.Path.write_bytes", "pathlib.Path.mkdir"])


@CONTRACT
@given(code=FAILURES, call=CALLS, after=st.integers(0, 1))
def test_operating_system_failures_while_saving_are_storage_errors_and_keep_the_previous_state(legit, code, call,
                                                                                              after):
    with tempfile.TemporaryDirectory() as folder:
        path = legit["adapted"].save(Path(folder) / "s.npz")
        previous = path.read_bytes()
        real, calls = _resolve(call), []

        def failing(*args, **kwargs):
            calls.append(args)
            if len(calls) > after:
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        with mock.patch(call, failing):
            saved = attempt("os failures: save", lambda: legit["adapted"].save(path))
        if saved is None:
            assert path.read_bytes() == previous
            with pytest.raises(rt.StorageError) as caught, mock.patch(call, _always_failing(code)):
                legit["adapted"].save(path)
            assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == code
        assert os.listdir(folder) == ["s.npz"]


def _always_failing(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    owner = {"os": os, "pathlib.Path": Path}[module]
    return getattr(owner, name)


@CONTRACT
@given(threads=st.one_of(st.none(), st.integers(-2, 300), st.integers(-2, 2 ** 40), st.booleans(), st.floats(),
                         st.text(max_size=3)),
       backend=st.one_of(st.just("onnxruntime"), st.sampled_from(["tflite", "", "ONNXRUNTIME"]), st.integers(),
                         st.none(), st.lists(st.just("onnxruntime"), max_size=1)))
def test_thread_counts_and_engines_are_checked(artifact, threads, backend):
    loaded = attempt("threads and engines", lambda: rt.load(artifact[0], backend=backend, threads=threads))
    if loaded is not None:
        assert backend == "onnxruntime" and (threads is None or (type(threads) is int and 1 <= threads <= 256))
        x, y = task(2, 2)
        assert np.isfinite(loaded.adapt(x, y).predict_proba(x)).all()
