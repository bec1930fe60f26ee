import torch

from edgeadapt.sdk.datasets.base import ClassDataset
from edgeadapt.sdk.tasks import EpisodeSampler

from helpers import labelled_dataset


def test_shapes_and_label_layout():
    batch = EpisodeSampler(labelled_dataset(), ways=5, shots=3, query_shots=4, seed=1).sample(7)
    assert batch.support_x.shape == (7, 15, 1, 28, 28)
    assert batch.query_x.shape == (7, 20, 1, 28, 28)
    assert batch.support_y.dtype == torch.int64
    assert batch.support_y[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert batch.query_y[0].tolist() == sum(([label] * 4 for label in range(5)), [])


def test_each_label_is_one_class_and_support_query_drawings_are_disjoint():
    batch = EpisodeSampler(labelled_dataset(), ways=5, shots=3, query_shots=4, seed=2).sample(20)
    for sx, sy, qx, qy in zip(*batch):
        s_val, q_val = sx[:, 0, 0, 0], qx[:, 0, 0, 0]
        for label in range(5):
            s_cls, q_cls = s_val[sy == label].floor(), q_val[qy == label].floor()
            assert len(set(s_cls.tolist()) | set(q_cls.tolist())) == 1
        assert not set(s_val.tolist()) & set(q_val.tolist())
        assert len(set(s_val.floor().tolist())) == 5


def test_labels_are_permuted_across_tasks():
    batch = EpisodeSampler(labelled_dataset(), ways=5, shots=1, query_shots=1, seed=3).sample(50)
    class_of_label0 = batch.support_x[:, 0, 0, 0, 0].floor()
    assert len(set(class_of_label0.tolist())) > 5


def test_splits_never_mix():
    train = labelled_dataset(12, offset=0)
    validation = labelled_dataset(8, offset=100)
    for dataset, allowed in ((train, range(0, 12)), (validation, range(100, 108))):
        batch = EpisodeSampler(dataset, ways=5, shots=2, query_shots=3, seed=4).sample(200)
        seen = set(torch.cat([batch.support_x, batch.query_x], 1)[..., 0, 0, 0].floor().int().flatten().tolist())
        assert seen <= set(allowed)
        assert len(seen) == len(allowed)  # every class of the split shows up, none of the other


def test_deterministic_by_seed_and_resumable_state():
    a = EpisodeSampler(labelled_dataset(), 5, 1, 1, seed=5)
    b = EpisodeSampler(labelled_dataset(), 5, 1, 1, seed=5)
    assert torch.equal(a.sample(4).support_x, b.sample(4).support_x)
    state = a.state_dict()
    first = a.sample(3)
    a.load_state_dict(state)
    assert torch.equal(a.sample(3).query_x, first.query_x)
    c = EpisodeSampler(labelled_dataset(), 5, 1, 1, seed=6)
    assert not torch.equal(c.sample(4).support_x, b.sample(4).support_x)


def test_tasks_by_position_do_not_depend_on_how_a_meta_batch_is_shared():
    sampler = EpisodeSampler(labelled_dataset(), 5, 1, 2, seed=5, min_ways=3)
    whole = sampler.tasks(3, range(6))
    parts = [sampler.tasks(3, range(0, 2)), sampler.tasks(3, range(2, 3)), sampler.tasks(3, range(3, 6))]
    for column, *pieces in zip(whole, *parts):
        assert torch.equal(column, torch.cat(pieces))
    fresh = EpisodeSampler(labelled_dataset(), 5, 1, 2, seed=5, min_ways=3)
    fresh.sample(4)  # the stream's state does not matter
    assert torch.equal(fresh.tasks(3, range(6)).query_x, whole.query_x)
    for other in (sampler.tasks(4, range(6)), EpisodeSampler(labelled_dataset(), 5, 1, 2, seed=6, min_ways=3)
                  .tasks(3, range(6))):
        assert not torch.equal(other.support_x, whole.support_x)
    assert len({tuple(x[:, 0, 0, 0].tolist()) for x in whole.support_x}) == 6  # six different tasks


def test_iteration_yields_single_tasks():
    task = next(iter(EpisodeSampler(labelled_dataset(), 3, 2, 1, seed=0)))
    assert task.support_x.shape == (6, 1, 28, 28) and task.query_y.shape == (3,)


def test_rejects_impossible_tasks():
    import pytest

    with pytest.raises(ValueError, match="classes"):
        EpisodeSampler(labelled_dataset(4), ways=5, shots=1)
    with pytest.raises(ValueError, match="need 5 classes that large"):
        EpisodeSampler(labelled_dataset(), ways=5, shots=15, query_shots=10)
    with pytest.raises(ValueError, match="ways"):
        EpisodeSampler(labelled_dataset(), ways=1, shots=1)


def test_variable_ways_and_shots_are_padded_with_ignored_labels():
    from edgeadapt.sdk.inner_loop import PAD_LABEL

    sampler = EpisodeSampler(labelled_dataset(), ways=5, shots=3, query_shots=2, seed=9, min_ways=2, min_shots=1)
    batch = sampler.sample(300)
    assert batch.support_x.shape == (300, 15, 1, 28, 28) and batch.query_y.shape == (300, 10)
    seen_ways, seen_shots = set(), set()
    for sy, qy in zip(batch.support_y, batch.query_y):
        real = sy[sy != PAD_LABEL]
        ways = int(real.max()) + 1
        counts = torch.bincount(real, minlength=ways)
        assert torch.all(counts == counts[0]) and 1 <= counts[0] <= 3  # every class has the task's shot count
        assert set(qy[qy != PAD_LABEL].tolist()) == set(range(ways))  # queries only from the task's classes
        seen_ways.add(ways)
        seen_shots.add(int(counts[0]))
    assert seen_ways == {2, 3, 4, 5} and seen_shots == {1, 2, 3}


def test_within_alphabet_tasks_draw_every_class_from_one_group():
    groups = ("a", "a", "a", "b", "b", "c")  # "c" has too few classes for a 2-way task
    examples = torch.cat([torch.full((4, 1, 2, 2), float(c)) for c in range(len(groups))])
    data = ClassDataset(examples, (4,) * len(groups), tuple("uvwxyz"), groups)
    batch = EpisodeSampler(data, ways=2, shots=1, query_shots=1, seed=0, within_alphabet=True).sample(100)
    task_groups = [{groups[int(c)] for c in task[:, 0, 0, 0]} for task in batch.support_x]
    assert all(len(g) == 1 for g in task_groups) and {next(iter(g)) for g in task_groups} == {"a", "b"}
    mixed = EpisodeSampler(data, ways=2, shots=1, query_shots=1, seed=0).sample(100)
    assert any(len({groups[int(c)] for c in task[:, 0, 0, 0]}) == 2 for task in mixed.support_x)
