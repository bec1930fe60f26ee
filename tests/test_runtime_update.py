"""AdaptedLearner.update: re-adapting from the meta-learned weights to a bounded stored support set. It never drops
a class, keeps at most max_shots recent examples per class, computes what PyTorch computes, refuses too many classes
without losing anything, and its state (format 3) restores bit-identically and refuses tampering."""

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import edgeadapt.runtime as rt
from artifacts import npy, task, write_zip, zip_members
from edgeadapt.runtime.format.files import sha256_bytes
from edgeadapt.runtime.format.manifest import sealed

QUERIES = np.random.default_rng(7).random((5, 1, 28, 28), dtype=np.float32)


def images(n, seed):
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


@pytest.fixture(scope="module")
def updated(learner):
    """class-0/1 adapted, then a new class, then more examples of class-0 (4-way, max 3-shot artifact)."""
    x, y = task(2, 2, seed=1)
    first = learner.adapt(x, y)
    second = first.update(images(2, 2), ["new", "new"])
    return first, second, second.update(images(3, 3), ["class-0"] * 3)


arrivals = st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=6), min_size=1, max_size=5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals)
def test_update_never_drops_a_class_and_stays_bounded(learner, stream):
    current = learner.adapt(*task(2, 1, seed=0))
    seen = list(current.classes)
    for i, labels in enumerate(stream):
        if max(labels.count(c) for c in labels) > learner.max_shots:
            continue
        new = [c for c in dict.fromkeys(sorted(labels)) if c not in seen]
        if len(seen) + len(new) > learner.max_ways:
            with pytest.raises(rt.InputError, match="max_ways"):
                current.update(images(len(labels), i), labels)
            continue
        x = images(len(labels), 100 + i)
        current = current.update(x, labels)
        seen += new
        assert list(current.classes) == seen
        counts = np.bincount(current._support.y, minlength=len(seen))
        assert (counts >= 1).all() and counts.max() <= learner.max_shots
        assert current.examples <= learner.max_ways * learner.max_shots
        for label in set(labels):  # the newest examples of each class are kept
            kept = current._support.x[current._support.y == seen.index(label)]
            np.testing.assert_array_equal(kept[-labels.count(label):], x[np.array(labels) == label])
        assert current.predict_proba(QUERIES).shape == (len(QUERIES), len(seen))


def test_update_keeps_the_most_recent_examples_per_class(updated, learner):
    first, second, third = updated
    assert first.classes == ("class-0", "class-1") and second.classes == third.classes == ("class-0", "class-1", "new")
    assert (first.examples, second.examples, third.examples) == (4, 6, 7)
    np.testing.assert_array_equal(third._support.x[third._support.y == 0], images(3, 3))  # 2 old + 3 new: 3 newest
    second_more = second.update(images(2, 4), ["class-0", "class-1"])
    kept = second_more._support.x[second_more._support.y == 0]
    np.testing.assert_array_equal(kept, np.concatenate([task(2, 2, seed=1)[0][:2], images(2, 4)[:1]]))


def test_update_matches_pytorch(artifact, updated):
    if artifact[1] is None:
        pytest.skip("needs the torch model the artifact came from")
    from helpers import reference_probabilities

    for adapted in updated:
        expected = reference_probabilities(artifact[1], adapted._support.x, adapted._support.y, len(adapted.classes),
                                           QUERIES)
        np.testing.assert_allclose(adapted.predict_proba(QUERIES), expected, atol=1e-5, rtol=0)


def test_too_many_classes_are_refused_and_nothing_is_lost(updated):
    _, _, third = updated
    before = third.predict_proba(QUERIES)
    with pytest.raises(rt.InputError, match="5 classes exceed this artifact's max_ways=4"):
        third.update(images(2, 9), ["x", "y"])
    with pytest.raises(rt.InputError, match="max_shots=3"):
        third.update(images(4, 9), ["x"] * 4)
    assert third.classes == ("class-0", "class-1", "new") and third.examples == 7
    np.testing.assert_array_equal(third.predict_proba(QUERIES), before)


def test_a_state_saved_after_updates_restores_bit_identically(updated, learner, tmp_path):
    _, _, third = updated
    restored = learner.restore(third.save(tmp_path / "s.npz"))
    assert restored.classes == third.classes
    np.testing.assert_array_equal(restored.predict_proba(QUERIES), third.predict_proba(QUERIES))
    np.testing.assert_array_equal(restored._support.x, third._support.x)
    more = images(1, 11), ["class-1"]
    np.testing.assert_array_equal(restored.update(*more).predict_proba(QUERIES),
                                  third.update(*more).predict_proba(QUERIES))


def test_a_tampered_state_is_refused(updated, learner, tmp_path):
    _, _, third = updated
    members = zip_members(third.save(tmp_path / "s.npz"))
    x = np.lib.format.read_array(io.BytesIO(members["support/x.npy"]))
    x[0, 0, 0, 0] += 0.5
    with pytest.raises(rt.ArtifactError, match="support/x.npy does not match its checksum"):
        learner.restore(write_zip(tmp_path / "x.npz", {**members, "support/x.npy": npy(x)}))
    # a consistent checksum over labels that leave a class without examples
    y = np.zeros(7, np.int64)
    meta = json.loads(members["meta.json"])
    meta["arrays"]["support/y.npy"] = sha256_bytes(npy(y))
    resealed = json.dumps(sealed({k: v for k, v in meta.items() if k != "sha256"}, "sha256")).encode()
    with pytest.raises(rt.ArtifactError, match="name each of the 3 classes"):
        learner.restore(write_zip(tmp_path / "y.npz", {**members, "support/y.npy": npy(y), "meta.json": resealed}))
    meta = json.loads(members["meta.json"])
    meta["examples"] = 6  # a count that disagrees with the arrays
    resealed = json.dumps(sealed({k: v for k, v in meta.items() if k != "sha256"}, "sha256")).encode()
    with pytest.raises(rt.ArtifactError, match="shape"):
        learner.restore(write_zip(tmp_path / "n.npz", {**members, "meta.json": resealed}))
    without = {k: v for k, v in members.items() if not k.startswith("support/")}
    with pytest.raises(rt.ArtifactError, match="holds"):
        learner.restore(write_zip(tmp_path / "w.npz", without))
