import numpy as np
import pytest
import torch

from edgeadapt.sdk import Conv4, EpisodeSampler, EvalResult, InnerLoop, MetaConfig, evaluate, get_algorithm, reptile_adapt
from edgeadapt.sdk.datasets import SineTaskSampler
from edgeadapt.sdk.models import MLP

from helpers import labelled_dataset


def test_confidence_interval_is_1_96_standard_errors():
    result = EvalResult("accuracy", np.array([0.2, 0.4, 0.6, 0.8]))
    assert result.mean == pytest.approx(0.5)
    assert result.ci95 == pytest.approx(1.96 * np.std([0.2, 0.4, 0.6, 0.8], ddof=1) / 2)
    assert str(result).startswith("50.00% ± ")


def test_evaluate_scores_each_task_against_an_independent_count():
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8)
    sampler = EpisodeSampler(labelled_dataset(), ways=3, shots=2, query_shots=4, seed=11)
    result = evaluate(model, sampler, inner_lr=0.5, inner_steps=2, num_tasks=7, tasks_per_batch=3)
    assert result.num_tasks == 7 and result.metric == "accuracy"
    replay = EpisodeSampler(labelled_dataset(), ways=3, shots=2, query_shots=4, seed=11)
    expected = []
    for size in (3, 3, 1):
        for sx, sy, qx, qy in zip(*replay.sample(size)):
            adapted = reptile_adapt(model, sx, sy, inner_lr=0.5, inner_steps=2)
            expected.append((adapted(qx).argmax(-1) == qy).float().mean().item())
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)


def test_regression_is_scored_by_mean_squared_error():
    torch.manual_seed(0)
    model = MLP()
    result = evaluate(model, SineTaskSampler(shots=5, query=5, seed=0), inner_lr=0.01, inner_steps=1, num_tasks=4)
    assert result.metric == "mse" and result.num_tasks == 4
    expected = []
    for sx, sy, qx, qy in zip(*SineTaskSampler(shots=5, query=5, seed=0).sample(4)):
        adapted = reptile_adapt(model, sx, sy, inner_lr=0.01, inner_steps=1, loss="mse")
        with torch.no_grad():
            expected.append(((adapted(qx) - qy) ** 2).mean().item())
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)
    assert str(result).startswith(f"mse {np.mean(expected):.4f} ± ")


def test_reptile_adapt_returns_an_adapted_copy_and_leaves_the_model_alone():
    torch.manual_seed(1)
    model = Conv4(ways=3, hidden=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = next(iter(EpisodeSampler(labelled_dataset(), 3, 2, 1, seed=1)))
    adapted = reptile_adapt(model, task.support_x, task.support_y, inner_lr=0.5, inner_steps=3)
    inner = InnerLoop(model, 0.5, 3)
    expected = inner.inner_update(inner.params(), task.support_x, task.support_y)
    for name, p in adapted.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert adapted is not model


def _outer_rates(config: MetaConfig, iterations: list[int]) -> list[float]:
    """The outer learning rate the algorithm's own schedule gives at each of ``iterations``."""
    algorithm = get_algorithm(config.algorithm)
    optimizer = algorithm.optimizer([torch.nn.Parameter(torch.zeros(1))], config.outer)
    scheduler = algorithm.scheduler(optimizer, config.outer)
    rates = []
    for i in range(max(iterations) + 1):
        if i in iterations:
            rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_reptile_outer_step_anneals_linearly_and_others_do_not():
    reptile = MetaConfig("reptile", inner_lr=0.1, outer_lr=1.0, inner_steps=5, meta_batch_size=5, num_iterations=100,
                         outer_lr_final=0.2)
    assert _outer_rates(reptile, [0, 50, 100]) == pytest.approx([1.0, 0.6, 0.2])
    for algorithm in ("maml", "fomaml"):
        config = MetaConfig(algorithm, inner_lr=0.1, outer_lr=0.001, inner_steps=5, meta_batch_size=5,
                            num_iterations=100)
        assert _outer_rates(config, [0, 99]) == [0.001, 0.001]


@pytest.mark.parametrize("kwargs, message", [({"inner_lr": 0}, "inner_lr"), ({"inner_steps": -1}, "inner_steps"),
                                             ({"loss": "hinge"}, "loss"), ({"scope": "body"}, "scope")])
def test_inner_loop_rejects_bad_settings(kwargs, message):
    settings = {"inner_lr": 0.1, "inner_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        InnerLoop(Conv4(), **settings)
