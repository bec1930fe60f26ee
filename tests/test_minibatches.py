"""Mini-batch inner steps: the schedule, the steps it makes the inner loop take, and exact resume in training."""

import pytest
import torch
from helpers import labelled_dataset

from edgeadapt.sdk import Conv4, EpisodeSampler, InnerLoop, train_maml
from edgeadapt.sdk.checkpoint import load_checkpoint
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.inner_loop import PAD_LABEL
from edgeadapt.sdk.minibatches import batch_minibatch_masks, minibatch_masks


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_each_epoch_of_minibatches_sees_every_real_example_once():
    real = torch.tensor([1.0] * 12 + [0.0] * 3)  # 3 padding examples at the end
    masks = minibatch_masks(real, batch_size=4, steps=9, generator=_generator())
    assert masks.shape == (9, 15)
    assert (masks.sum(1) == 4).all() and (masks[:, 12:] == 0).all()
    for epoch in masks.reshape(3, 3, 15):
        assert torch.equal(epoch.sum(0), real)
    assert not torch.equal(masks[:3], masks[3:6])  # reshuffled between epochs


def test_a_batch_that_does_not_divide_the_examples_never_repeats_one():
    masks = minibatch_masks(torch.ones(10), batch_size=4, steps=6, generator=_generator(1))
    assert (masks.sum(1) == 4).all() and masks.max() == 1.0
    assert (masks[:2].sum(0) <= 1).all()


def test_schedules_follow_the_generator_alone():
    real = torch.ones(3, 10)
    first = batch_minibatch_masks(real, 3, 5, [_generator(i) for i in range(3)])
    again = batch_minibatch_masks(real, 3, 5, [_generator(i) for i in range(3)])
    assert torch.equal(first, again) and not torch.equal(first[0], first[1])


def test_a_batch_as_large_as_the_task_is_the_whole_support_set():
    real = torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert torch.equal(minibatch_masks(real, 3, 2, _generator()), real.expand(2, 4))


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"example_mask": torch.zeros(4)}])
def test_bad_schedules_are_refused(bad):
    arguments = {"example_mask": torch.ones(4), "batch_size": 2, "steps": 3, "generator": _generator(), **bad}
    with pytest.raises(ConfigError):
        minibatch_masks(**arguments)


def _inner(steps=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = Conv4(ways=3, hidden=4, activation="elu").double()
    return InnerLoop(model, inner_lr=0.3, inner_steps=steps, **kwargs)


def _task(seed=0):
    g = _generator(seed)
    return torch.randn(9, 1, 28, 28, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2] * 3)


def test_minibatch_steps_are_full_batch_steps_on_each_minibatch():
    inner = _inner()
    x, y = _task()
    masks = minibatch_masks(torch.ones(9, dtype=torch.float64), 4, 3, _generator(2))
    adapted = inner.inner_update(inner.params(), x, y, step_masks=masks)
    expected = inner.params()
    for mask in masks.bool():
        expected = inner.inner_update(expected, x[mask], y[mask], steps=1)
    for name in adapted:
        torch.testing.assert_close(adapted[name], expected[name], rtol=1e-10, atol=1e-12)
    full = inner.inner_update(inner.params(), x, y)
    assert not torch.allclose(adapted["head.weight"], full["head.weight"])


def test_all_ones_step_masks_are_full_batch_steps_and_padding_stays_ignored():
    inner = _inner(head_init="prototypes", ways=3, scope="last_block")
    x, y = _task()
    padded_x = torch.cat([x, torch.randn(2, 1, 28, 28, dtype=torch.float64)])
    padded_y = torch.cat([y, torch.full((2,), PAD_LABEL)])
    adapted = inner.inner_update(inner.params(), padded_x, padded_y, step_masks=torch.ones(3, 11, dtype=torch.float64))
    full = inner.inner_update(inner.params(), x, y)
    for name in adapted:
        torch.testing.assert_close(adapted[name], full[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scope", ["all", "head"])
def test_vectorised_and_task_by_task_minibatch_adaptation_agree(scope):
    inner = _inner(scope=scope)
    xs, ys = zip(*(_task(seed) for seed in range(3)))
    x, y = torch.stack(xs), torch.stack(ys)
    masks = batch_minibatch_masks(torch.ones(3, 9, dtype=torch.float64), 5, 3, [_generator(i) for i in range(3)])
    with torch.no_grad():
        vectorised = inner.adapt_batch(inner.params(), x, y, step_masks=masks)
        each = InnerLoop(inner.model, 0.3, 3, scope=scope, vectorise=False).adapt_batch(inner.params(), x, y,
                                                                                         step_masks=masks)
    for name in vectorised:
        torch.testing.assert_close(vectorised[name], each[name], rtol=1e-9, atol=1e-11)


def test_step_masks_of_the_wrong_shape_are_refused():
    inner = _inner()
    x, y = _task()
    with pytest.raises(ConfigError, match="step_masks"):
        inner.inner_update(inner.params(), x, y, step_masks=torch.ones(2, 9, dtype=torch.float64))


def _train(tmp_path, inner_batch):
    torch.manual_seed(0)
    sampler = EpisodeSampler(labelled_dataset(), ways=3, shots=3, query_shots=1, seed=1)
    model = Conv4(ways=3, hidden=4, activation="elu")
    return train_maml(model, sampler, 0.1, 0.5, 3, "reptile", 2, 2, inner_batch=inner_batch,
                      checkpoint_dir=tmp_path, progress=False)[0]


def test_minibatch_training_takes_other_steps_and_is_recorded(tmp_path):
    """(Exact resume of such a run: tests/test_checkpoint.py.)"""
    minibatches = _train(tmp_path / "minibatches", 4)
    assert load_checkpoint(tmp_path / "minibatches")[1]["training"]["inner_batch"] == 4
    full_batch = _train(tmp_path / "full", None)
    assert not torch.equal(full_batch.head.weight, minibatches.head.weight)
