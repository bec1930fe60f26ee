"""Head initialisations inside the one inner loop: prototypes, zeros, and the routine training and export share."""

import pytest
import torch

from edgeadapt.sdk import Conv4, EpisodeSampler, InnerLoop, MetaConfig, MetaTrainer
from edgeadapt.sdk.heads import is_per_task, prototype_head, prototypes
from edgeadapt.sdk.inner_loop import PAD_LABEL

from helpers import labelled_dataset


def _task(ways: int = 4, shots: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(ways * shots, 1, 28, 28, generator=g)
    y = torch.arange(ways).repeat_interleave(shots)
    queries = torch.rand(6, 1, 28, 28, generator=g)
    return x, y, queries


def _model(seed: int = 0) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(ways=3, hidden=8, activation="elu")


def test_prototype_head_with_no_step_is_nearest_centroid():
    model = _model()
    x, y, queries = _task()
    inner = InnerLoop(model, 0.1, 0, scope="head", head_init="prototypes", ways=4)
    probabilities = inner.probabilities(x, y, queries)
    with torch.no_grad():
        centres = prototypes(model.features(x), y, torch.ones(len(y)), 4)
        distances = torch.cdist(model.features(queries), centres)
    assert torch.equal(probabilities.argmax(-1), distances.argmin(-1))
    # The logits are ||f||^2 - ||f - c_k||^2: softmax of minus squared distances.
    torch.testing.assert_close(probabilities, torch.softmax(-distances**2, -1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scope, steps", [("head", 0), ("head", 3), ("last_block", 2), ("all", 2)])
def test_prototype_heads_are_invariant_to_label_permutation(scope, steps):
    model = _model(1)
    x, y, queries = _task(seed=1)
    inner = InnerLoop(model, 0.05, steps, scope=scope, head_init="prototypes", ways=4)
    permutation = torch.tensor([2, 0, 3, 1])
    original = inner.probabilities(x, y, queries)
    permuted = inner.probabilities(x, permutation[y], queries)
    torch.testing.assert_close(permuted[:, permutation], original, atol=1e-6, rtol=1e-5)


def test_a_float64_model_adapts_with_the_default_masks():
    """The masks a task's labels imply are float32; a float64 model (the exact reference) must still adapt."""
    x, y, queries = _task()
    single = InnerLoop(_model(), 0.1, 2, scope="head", head_init="prototypes", ways=4)
    double = InnerLoop(_model().double(), 0.1, 2, scope="head", head_init="prototypes", ways=4)
    exact = double.probabilities(x.double(), y, queries.double())
    assert exact.dtype == torch.float64
    torch.testing.assert_close(exact.float(), single.probabilities(x, y, queries), atol=1e-5, rtol=1e-4)


def test_zero_head_starts_uniform_and_learns():
    inner = InnerLoop(_model(), 0.5, 0, head_init="zeros", ways=4)
    x, y, queries = _task()
    torch.testing.assert_close(inner.probabilities(x, y, queries), torch.full((6, 4), 0.25))
    adapted = InnerLoop(_model(), 0.5, 5, scope="head", head_init="zeros", ways=4).probabilities(x, y, x)
    support_loss = -adapted[torch.arange(len(y)), y].log().mean()
    assert support_loss < torch.log(torch.tensor(4.0)) - 0.01


def test_padding_examples_and_absent_classes_change_nothing():
    model = _model(2)
    x, y, queries = _task(ways=3, shots=2, seed=2)
    inner = InnerLoop(model, 0.1, 2, scope="last_block", head_init="prototypes", ways=5)
    base = inner.probabilities(x, y, queries, class_mask=torch.tensor([1.0, 1, 1, 0, 0]))
    padded_x = torch.cat([x, torch.rand(4, 1, 28, 28)])
    padded_y = torch.cat([y, torch.full((4,), PAD_LABEL)])
    padded = inner.probabilities(padded_x, padded_y, queries, class_mask=torch.tensor([1.0, 1, 1, 0, 0]))
    torch.testing.assert_close(padded, base, atol=1e-6, rtol=1e-5)
    assert torch.all(base[:, 3:] == 0)


def test_prototype_head_weights_match_the_formula():
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    weight, bias = prototype_head(features, torch.tensor([0, 0, 1]), torch.ones(3), 3)
    torch.testing.assert_close(weight, torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 0.0]]))
    torch.testing.assert_close(bias, torch.tensor([-4.0, -4.0, 0.0]))


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml", "maml"])
def test_training_runs_the_exported_routine(monkeypatch, algorithm):
    """Meta-training adapts through InnerLoop.inner_update, the function export traces: if training ever used
    another implementation, this fails."""
    calls = []
    original = InnerLoop.inner_update

    def spy(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InnerLoop, "inner_update", spy)
    sampler = EpisodeSampler(labelled_dataset(), 3, 2, 2, seed=0, min_ways=2, min_shots=1)
    config = MetaConfig(algorithm, inner_lr=0.1, outer_lr=0.01, inner_steps=2, meta_batch_size=2, num_iterations=1,
                        scope="last_block", head_init="prototypes")
    trainer = MetaTrainer(_model(), sampler, config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.step()
    assert calls, "training did not adapt through inner_update"
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    # A head re-initialised per task is not meta-learned: it never moves.
    assert torch.equal(before["head.weight"], trainer.model.state_dict()["head.weight"])


def test_batched_adaptation_equals_each_task_alone_with_padding():
    sampler = EpisodeSampler(labelled_dataset(), 4, 3, 2, seed=3, min_ways=2, min_shots=1)
    batch = sampler.sample(3)
    inner = InnerLoop(_model(3), 0.1, 2, scope="last_block", head_init="prototypes", ways=4)
    batched = inner.adapt_batch(inner.params(), batch.support_x, batch.support_y)
    for task in range(3):
        alone = inner.inner_update(inner.params(), batch.support_x[task], batch.support_y[task])
        for name, value in alone.items():
            torch.testing.assert_close(batched[name][task], value, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("head_init, per_task", [("learned", False), ("zeros", True), ("prototypes", True)])
def test_per_task_heads_serve_any_number_of_ways(head_init, per_task):
    assert is_per_task(head_init) is per_task
    model = Conv4(ways=2, hidden=4)
    inner = InnerLoop(model, 0.1, 1, head_init=head_init, ways=5 if per_task else None)
    x, y, queries = _task(ways=2)
    adapted = inner.inner_update(inner.params(), x, y)
    # a per-task head has the inner loop's ways; the learned one keeps the model's and is a meta-parameter
    assert adapted["head.weight"].shape[0] == (5 if per_task else 2)


@pytest.mark.parametrize("algorithm", ["fomaml", "maml"])
def test_meta_training_a_batch_norm_model_keeps_its_running_statistics(algorithm):
    """Meta-training adapts through the inner loop, which normalises by batch norm's running statistics: a model
    handed over in training mode is switched to eval mode, and the statistics never move."""
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8, activation="elu", norm="batch")
    model(torch.rand(16, 1, 28, 28))  # one training-mode pass gives the statistics values of their own
    statistics = {k: v.clone() for k, v in model.named_buffers()}
    sampler = EpisodeSampler(labelled_dataset(), 3, 2, 2, seed=0, min_ways=2, min_shots=1)
    config = MetaConfig(algorithm, inner_lr=0.1, outer_lr=0.01, inner_steps=2, meta_batch_size=2, num_iterations=2,
                        scope="last_block", head_init="prototypes")
    trainer = MetaTrainer(model, sampler, config)
    weights = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.step()
    trainer.step()
    assert not trainer.model.training
    assert all(torch.equal(v, statistics[k]) for k, v in trainer.model.named_buffers())
    assert any(not torch.equal(weights[k], v) for k, v in trainer.model.named_parameters())
