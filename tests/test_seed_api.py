"""The seeds' public names keep working: train_maml(..., algorithm=), reptile_train, reptile_adapt, inner_update,
forward_with_weights."""

from __future__ import annotations

import torch

from edgeadapt.sdk import (Conv4, EpisodeSampler, InnerLoop, MetaConfig, adapted_copy, meta_train, reptile_adapt,
                           reptile_train, train_maml)

from helpers import labelled_dataset


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _run(train, *args, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4)
    sampler = EpisodeSampler(labelled_dataset(), ways=3, shots=1, query_shots=2, seed=3)
    trained, history = train(model, sampler, *args, progress=False, **kwargs)
    assert len(history) == 2
    return trained


def test_train_maml_with_algorithm_is_meta_train():
    for algorithm in ("maml", "fomaml", "reptile"):
        seeds = _run(train_maml, 0.5, 0.1, 1, algorithm=algorithm, meta_batch_size=2, num_iterations=2)
        honest = _run(meta_train, MetaConfig(algorithm, inner_lr=0.5, outer_lr=0.1, inner_steps=1, meta_batch_size=2,
                                             num_iterations=2))
        assert torch.equal(_weights(seeds), _weights(honest))
    torch.manual_seed(0)
    assert not torch.equal(_weights(seeds), _weights(Conv4(ways=3, hidden=4)))  # it did train


def test_reptile_train_takes_the_outer_rate_first():
    """reptile_train(model, sampler, meta_lr, inner_lr, inner_steps, num_iterations), as the seeds call it."""
    shorthand = _run(reptile_train, 0.3, 0.5, 1, 2, meta_batch_size=2)
    full = _run(train_maml, 0.5, 0.3, 1, algorithm="reptile", meta_batch_size=2, num_iterations=2)
    assert torch.equal(_weights(shorthand), _weights(full))
    swapped = _run(train_maml, 0.3, 0.5, 1, algorithm="reptile", meta_batch_size=2, num_iterations=2)
    assert not torch.equal(_weights(shorthand), _weights(swapped))


def test_reptile_adapt_inner_update_and_forward_with_weights_agree():
    torch.manual_seed(1)
    model = Conv4(ways=3, hidden=4)
    task = next(iter(EpisodeSampler(labelled_dataset(), 3, 2, 2, seed=1)))
    inner = InnerLoop(model, 0.5, 2)
    params = inner.inner_update(inner.params(), task.support_x, task.support_y)
    adapted = reptile_adapt(model, task.support_x, task.support_y, inner_lr=0.5, inner_steps=2)
    with torch.no_grad():
        torch.testing.assert_close(inner.forward_with_weights(task.query_x, params), adapted(task.query_x))
        assert not torch.allclose(model(task.query_x), adapted(task.query_x))  # adaptation changed the outputs
