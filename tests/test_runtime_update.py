"""AdaptedLearner.update: re-adapting from the meta-learned weights to a bounded stored support set. It never drops
a class, keeps at most max_shots examples per class (the newest, or with keep="reservoir" a uniform sample of all
ever offered, deterministically), computes what PyTorch computes, refuses too many classes without losing anything,
and its state (format 3, with the offered counts) restores bit-identically and refuses tampering."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

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
    return first, second, second.update(images(3, 3), ["class-0"] * 3, keep="newest")


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
        current = current.update(x, labels, keep="newest")
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
    second_more = second.update(images(2, 4), ["class-0", "class-1"], keep="newest")
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


def resealed(members, **changes):
    """The state's members with its metadata changed (None removes a key) and its checksum made to match."""
    meta = {k: v for k, v in json.loads(members["meta.json"]).items() if k != "sha256"}
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    return {**members, "meta.json": json.dumps(sealed(meta, "sha256")).encode()}


def tagged(tags, seed):
    """Images whose first pixel names them (tag / 1000), the rest random."""
    x = images(len(tags), seed)
    x[:, 0, 0, 0] = np.asarray(tags, np.float32) / 1000
    return x


def test_an_unknown_keep_policy_is_an_input_error(updated):
    _, _, third = updated
    for keep in ("oldest", "", None, 3, "Reservoir"):
        with pytest.raises(rt.InputError, match="keep must be one of 'newest', 'reservoir'"):
            third.update(images(1, 5), ["class-0"], keep=keep)


def test_reservoir_is_the_default_and_newest_keeps_the_last_examples(updated):
    _, second, third = updated
    more = images(3, 3), ["class-0"] * 3
    default, reservoir = second.update(*more), second.update(*more, keep="reservoir")
    np.testing.assert_array_equal(default._support.x, reservoir._support.x)
    np.testing.assert_array_equal(default.predict_proba(QUERIES), reservoir.predict_proba(QUERIES))
    newest = np.concatenate([task(2, 2, seed=1)[0][[0, 1]], images(3, 3), task(2, 2, seed=1)[0][[2, 3]],
                             images(2, 2)])[[2, 3, 4, 5, 6, 7, 8]]
    np.testing.assert_array_equal(third._support.x, newest)  # class-0: its last 3 of 5; the others: all


def test_reservoir_is_bounded_counts_every_offer_and_keeps_offered_examples(learner):
    current = learner.adapt(tagged([1, 2, 3, 4], 0), ["a", "a", "b", "b"])
    offered = {"a": [1, 2], "b": [3, 4]}
    assert current.offered == {"a": 2, "b": 2}
    tag = 5
    for i, labels in enumerate([["a"] * 3, ["a", "b", "c"], ["c"] * 3 + ["a"] * 3, ["b"] * 2, ["a"] * 3]):
        tags = list(range(tag, tag + len(labels)))
        tag += len(labels)
        current = current.update(tagged(tags, 10 + i), labels, keep="reservoir")
        for t, c in zip(tags, labels):
            offered.setdefault(c, []).append(t)
        assert current.offered == {c: len(v) for c, v in offered.items()}
        counts = np.bincount(current._support.y, minlength=len(current.classes))
        assert (counts == [min(len(offered[c]), learner.max_shots) for c in current.classes]).all()
        kept = np.rint(current._support.x[:, 0, 0, 0] * 1000).astype(int)
        for k, c in enumerate(current.classes):
            assert set(kept[current._support.y == k]) <= set(offered[c])
            assert len(set(kept[current._support.y == k])) == counts[k]


def test_reservoir_keeps_a_uniform_sample_of_everything_offered(learner):
    """9 examples of class "a" offered over 4 calls (1 + 3 + 3 + 2), 3 kept: each must be kept in about 1/3 of 300
    streams (whose images differ, so each is drawn afresh). Newest would keep the last 3 always and the first 6
    never; the bound (0.12, over 4 standard deviations) fails any policy whose rate is off by 0.15 or more."""
    trials, n = 300, 9
    kept = np.zeros(n)
    for trial in range(trials):
        current = learner.adapt(tagged([1, 100], 1000 + trial), ["a", "b"])
        for tags in ([2, 3, 4], [5, 6, 7], [8, 9]):
            current = current.update(tagged(tags, 10_000 * trial + tags[0]), ["a"] * len(tags), keep="reservoir")
        assert current.offered == {"a": n, "b": 1}
        tags = np.rint(current._support.x[current._support.y == 0, 0, 0, 0] * 1000).astype(int)
        assert len(set(tags)) == learner.max_shots
        kept[tags - 1] += 1
    rates = kept / trials
    assert np.abs(rates - learner.max_shots / n).max() < 0.12, rates


def test_the_same_update_gives_the_same_learner_in_any_thread(updated):
    _, _, third = updated
    more = images(3, 21), ["class-0", "new", "class-0"]
    first = third.update(*more, keep="reservoir")
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(lambda _: third.update(*more, keep="reservoir"), range(4)))
    for other in again:
        np.testing.assert_array_equal(other._support.x, first._support.x)
        np.testing.assert_array_equal(other.predict_proba(QUERIES), first.predict_proba(QUERIES))
    assert third.examples == 7 and third.offered == {"class-0": 5, "class-1": 2, "new": 2}  # unchanged


def test_offered_counts_round_trip_through_save_and_restore(learner, tmp_path):
    current = learner.adapt(*task(2, 2, seed=3))
    for i in range(4):
        current = current.update(images(3, 30 + i), ["class-1", "class-0", "class-1"], keep="reservoir")
    restored = learner.restore(current.save(tmp_path / "s.npz"))
    assert restored.offered == current.offered == {"class-0": 6, "class-1": 10}
    assert json.loads(zip_members(tmp_path / "s.npz")["meta.json"])["offered"] == [6, 10]
    more = images(2, 40), ["class-0", "class-1"]
    a, b = restored.update(*more, keep="reservoir"), current.update(*more, keep="reservoir")
    np.testing.assert_array_equal(a._support.x, b._support.x)
    np.testing.assert_array_equal(a.predict_proba(QUERIES), b.predict_proba(QUERIES))
    assert a.offered == {"class-0": 7, "class-1": 11}


def test_a_state_without_counts_counts_its_stored_examples(updated, learner, tmp_path):
    _, _, third = updated
    members = resealed(zip_members(third.save(tmp_path / "s.npz")), offered=None)
    restored = learner.restore(write_zip(tmp_path / "old.npz", members))
    assert restored.offered == {"class-0": 3, "class-1": 2, "new": 2}
    np.testing.assert_array_equal(restored.predict_proba(QUERIES), third.predict_proba(QUERIES))


def test_tampered_counts_are_refused(updated, learner, tmp_path):
    _, _, third = updated
    members = zip_members(third.save(tmp_path / "s.npz"))
    assert json.loads(members["meta.json"])["offered"] == [5, 2, 2]
    for bad in ([2, 2, 2], [5, 2], [5, 2, 2, 1], [5, True, 2], [5.0, 2, 2], ["5", 2, 2], [5, 2, -1],
                [10**12 + 1, 2, 2], {"class-0": 5}, 5, []):
        with pytest.raises(rt.ArtifactError, match="offered must list, for each of the 3 classes"):
            learner.restore(write_zip(tmp_path / "t.npz", resealed(members, offered=bad)))
    with pytest.raises(rt.ArtifactError, match="meta.json does not match its checksum|does not match its checksum"):
        meta = json.loads(members["meta.json"])
        meta["offered"] = [6, 2, 2]
        learner.restore(write_zip(tmp_path / "u.npz", {**members, "meta.json": json.dumps(meta).encode()}))
    assert learner.restore(write_zip(tmp_path / "ok.npz", resealed(members, offered=[10**12, 3, 2]))).offered == {
        "class-0": 10**12, "class-1": 3, "new": 2}
