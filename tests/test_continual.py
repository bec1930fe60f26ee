"""Continual learning: the slow update, EWC's Fisher and penalty, the meta-lr policy, exact resumption."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeadapt.sdk.continual import (
    EWC,
    ContinualConfig,
    ContinualRun,
    ControllerConfig,
    MetaController,
    MetaLRPolicy,
    Task,
    accuracy,
    average_accuracy,
    few_shot_accuracy,
    forgetting,
)
from edgeadapt.sdk.checkpoint import CheckpointError
from edgeadapt.sdk.models import MLP


def _loss(model: nn.Module, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(6, 3, generator=g), torch.randint(0, 2, (6,), generator=g)
    return F.cross_entropy(model(x), y)


def _inner_loop(controller: MetaController, seed: int) -> dict[str, torch.Tensor]:
    """Run K inner steps from the slow weights; return theta_fast - theta_slow."""
    controller.reset_to_slow()
    for k in range(controller.config.inner_steps):
        controller.inner_loop_step(_loss(controller.model, seed + k))
    return {n: p.detach() - controller.slow[n] for n, p in controller.model.named_parameters()}


def test_inner_steps_are_plain_sgd_from_the_slow_weights():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    controller = MetaController(model, ControllerConfig(inner_lr=0.1, inner_steps=1))
    slow = {n: t.clone() for n, t in controller.slow.items()}
    reference = nn.Linear(3, 2)
    reference.load_state_dict(slow)
    gradients = torch.autograd.grad(_loss(reference, 7), list(reference.parameters()))
    controller.reset_to_slow()
    controller.inner_loop_step(_loss(model, 7))
    for (name, p), g in zip(model.named_parameters(), gradients):
        torch.testing.assert_close(p.detach(), slow[name] - 0.1 * g, rtol=0, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_slow_update_is_theta_slow_plus_alpha_times_delta(optimizer):
    torch.manual_seed(0)
    controller = MetaController(nn.Linear(3, 2), ControllerConfig(optimizer, inner_lr=0.1, meta_lr=0.3, inner_steps=3))
    for outer in range(3):
        before = {n: t.clone() for n, t in controller.slow.items()}
        delta = _inner_loop(controller, 10 * outer)
        assert any(d.abs().max() > 1e-4 for d in delta.values())
        assert controller.apply_outer_loop_update() == 0.3
        for n in before:
            torch.testing.assert_close(controller.slow[n], before[n] + 0.3 * delta[n], rtol=0, atol=1e-7)


def test_slow_update_with_momentum_and_an_explicit_meta_lr():
    torch.manual_seed(0)
    controller = MetaController(nn.Linear(3, 2), ControllerConfig(meta_lr=0.2, inner_steps=2, momentum=0.9))
    velocity = {n: torch.zeros_like(t) for n, t in controller.slow.items()}
    for outer, lr in enumerate([None, 0.05, 0.25]):
        before = {n: t.clone() for n, t in controller.slow.items()}
        delta = _inner_loop(controller, 10 * outer)
        velocity = {n: 0.9 * velocity[n] + delta[n] for n in velocity}
        used = controller.apply_outer_loop_update(lr)
        assert used == (0.2 if lr is None else lr)
        for n in before:
            torch.testing.assert_close(controller.slow[n], before[n] + used * velocity[n], rtol=0, atol=1e-6)


def test_multi_run_meta_update_averages_the_deltas():
    torch.manual_seed(0)
    controller = MetaController(nn.Linear(3, 2), ControllerConfig(meta_lr=0.5, inner_steps=2, meta_batch=2))
    before = {n: t.clone() for n, t in controller.slow.items()}
    deltas = []
    for run in range(2):
        deltas.append(_inner_loop(controller, 100 * run))
        controller.finish_inner_loop()
    controller.apply_outer_loop_update()
    for n in before:
        torch.testing.assert_close(controller.slow[n], before[n] + 0.5 * (deltas[0][n] + deltas[1][n]) / 2,
                                   rtol=0, atol=1e-7)


def test_apply_meta_weights_puts_the_slow_weights_in_the_model():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    controller = MetaController(model, ControllerConfig(meta_lr=0.5, inner_steps=2))
    _inner_loop(controller, 0)
    controller.apply_outer_loop_update()
    assert not torch.equal(model.weight, controller.slow["weight"])  # the model still holds the fast weights
    controller.apply_meta_weights()
    assert all(torch.equal(p, controller.slow[n]) for n, p in model.named_parameters())


def _softmax_regression() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Linear(2, 3)
    return model, torch.randn(5, 2), torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_fisher_matches_the_softmax_regression_formula(kind):
    """d log p_c / dW = (e_c - p) x^T and d log p_c / db = e_c - p, squared and averaged by hand."""
    model, x, y = _softmax_regression()
    fisher = EWC(model, lam=1.0, fisher=kind, chunk_size=2).fisher_diagonal(x, y)
    with torch.no_grad():
        p = F.softmax(model(x), dim=-1)
    expected_w, expected_b = torch.zeros(3, 2), torch.zeros(3)
    eye = torch.eye(3)
    for i in range(len(x)):
        classes = [(int(y[i]), 1.0)] if kind == "empirical" else [(c, float(p[i, c])) for c in range(3)]
        for c, weight in classes:
            r = eye[c] - p[i]
            expected_w += weight * (r[:, None] * x[i][None, :]) ** 2
            expected_b += weight * r ** 2
    torch.testing.assert_close(fisher["weight"], expected_w / len(x))
    torch.testing.assert_close(fisher["bias"], expected_b / len(x))


def test_ewc_penalty_and_its_gradient_by_hand():
    model, x, y = _softmax_regression()
    ewc = EWC(model, lam=4.0, fisher="empirical")
    ewc.consolidate_task((x, y))
    theta1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    f1 = ewc.fisher_diagonal(x, y)
    assert ewc.penalty().item() == 0.0
    with torch.no_grad():
        model.weight.add_(0.5)
    f2 = ewc.fisher_diagonal(x[:3], y[:3])
    ewc.consolidate_task((x[:3], y[:3]))
    theta2 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.bias.sub_(0.25)
    expected = 0.0
    for theta, fisher in ((theta1, f1), (theta2, f2)):
        for n, p in model.named_parameters():
            for fi, pi, ti in zip(fisher[n].flatten().tolist(), p.detach().flatten().tolist(), theta[n].flatten().tolist()):
                expected += 4.0 / 2 * fi * (pi - ti) ** 2
    penalty = ewc.penalty()
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    penalty.backward()
    expected_bias_grad = 4.0 * (f1["bias"] * (model.bias - theta1["bias"]) + f2["bias"] * (model.bias - theta2["bias"]))
    torch.testing.assert_close(model.bias.grad, expected_bias_grad.detach())


def test_the_penalty_over_many_anchors_is_their_sum_and_is_restored_from_a_checkpoint():
    model, x, y = _softmax_regression()
    ewc = EWC(model, lam=3.0, fisher="true")
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # 20 anchors at different weights, each with its own Fisher
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        ewc.consolidate_task((x, y))
    with torch.no_grad():
        model.weight.add_(0.1)
    params = dict(model.named_parameters())
    naive = 3.0 / 2 * sum((fisher[n] * (params[n] - theta[n]) ** 2).sum() for theta, fisher in ewc.anchors for n in params)
    naive_grad = torch.autograd.grad(naive, model.weight)[0]
    penalty = ewc.penalty()
    assert penalty.item() == pytest.approx(naive.item(), rel=1e-5) and penalty.item() > 0
    torch.testing.assert_close(torch.autograd.grad(penalty, model.weight)[0], naive_grad, rtol=1e-5, atol=1e-7)
    restored = EWC(model, lam=3.0)
    restored.load_state_tensors(ewc.state_tensors(), len(ewc.anchors))
    assert restored.penalty().item() == penalty.item()


def test_online_ewc_keeps_one_decayed_anchor():
    model, x, y = _softmax_regression()
    ewc = EWC(model, lam=1.0, fisher="true", gamma=0.5)
    f1 = ewc.fisher_diagonal(x, y)
    ewc.consolidate_task((x, y))
    with torch.no_grad():
        model.weight.mul_(2)
    f2 = ewc.fisher_diagonal(x, y)
    ewc.consolidate_task((x, y))
    assert len(ewc.anchors) == 1
    theta, fisher = ewc.anchors[0]
    assert torch.equal(theta["weight"], model.weight.detach())
    torch.testing.assert_close(fisher["weight"], 0.5 * f1["weight"] + f2["weight"])


def _tiny_tasks(n_tasks: int = 2, n: int = 24, features: int = 6) -> list[Task]:
    """Linearly separable 3-class tasks, each with its own random projection."""
    tasks = []
    for t in range(n_tasks):
        g = torch.Generator().manual_seed(t)
        centres = 2 * torch.randn(3, features, generator=g)
        y = torch.arange(n) % 3
        x = centres[y] + 0.3 * torch.randn(n, features, generator=g)
        tasks.append(Task(f"t{t}", x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:]))
    return tasks


def _run(method: str, **overrides) -> ContinualRun:
    torch.manual_seed(0)
    config = ContinualConfig.of(method, steps_per_task=12, batch_size=4, controller=ControllerConfig(
        inner_lr=0.1, meta_lr=0.5, inner_steps=3), ewc_lambda=1.0, fisher_samples=8, replay_per_task=6)
    config = config.replace(**overrides)
    return ContinualRun(MLP(6, (8,), 3), _tiny_tasks(), config, seed=0)


def test_reptile_with_ewc_at_lambda_zero_equals_reptile():
    plain = _run("reptile")
    with_ewc = _run("reptile-ewc", ewc_lambda=0.0)
    assert plain.train(progress=False) == with_ewc.train(progress=False)
    assert len(with_ewc.ewc.anchors) == 2 and with_ewc.ewc.penalty().item() == 0.0
    for n in plain.controller.slow:
        assert torch.equal(plain.controller.slow[n], with_ewc.controller.slow[n])
    differs = _run("reptile-ewc", ewc_lambda=10.0)
    differs.train(progress=False)
    assert not torch.equal(differs.controller.slow["head.weight"], plain.controller.slow["head.weight"])


@pytest.mark.parametrize("method,overrides,crash_at", [
    ("sgd-ewc", {}, 7),
    ("reptile-ewc", {"momentum": 0.9, "meta_lr_policy": True, "meta_lr": 0.2, "eval_every": 5}, 7),
    ("reptile", {"inner_optimizer": "adam", "meta_batch": 2}, 3),
    ("sgd", {"memory": 5}, 17),  # the crash falls in the second task, with the first task's examples remembered
    ("reptile-ewc", {"memory": 7, "memory_policy": "balanced", "distill": 0.5}, 6),
    ("sgd", {"memory": 5, "steps_per_batch": 3}, 22),  # resumed at step 8 of task 2: inside a draw of three steps
    ("reptile", {"memory": 5, "steps_per_batch": 2}, 4),
])
def test_resume_after_an_interruption_is_exact(tmp_path, monkeypatch, method, overrides, crash_at):
    reference = _run(method, **overrides)
    matrix = reference.train(progress=False, metrics_path=tmp_path / "ref.jsonl")

    interrupted = _run(method, **overrides)
    real_update, calls = ContinualRun.update, []

    def crash(self):
        calls.append(1)
        if len(calls) == crash_at:
            raise KeyboardInterrupt
        return real_update(self)

    monkeypatch.setattr(ContinualRun, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train(tmp_path / "ckpt", checkpoint_every=4, metrics_path=tmp_path / "run.jsonl", progress=False)
    monkeypatch.setattr(ContinualRun, "update", real_update)

    resumed = ContinualRun.resume(tmp_path / "ckpt", _tiny_tasks())
    done = resumed.task * 12 + resumed.task_step
    assert 0 < done < crash_at * reference.config.steps_per_update  # from a checkpoint taken before the crash
    assert resumed.train(tmp_path / "ckpt", checkpoint_every=4, metrics_path=tmp_path / "run.jsonl",
                         progress=False) == matrix
    assert _without_time(tmp_path / "run.jsonl") == _without_time(tmp_path / "ref.jsonl")
    for (name, p), q in zip(reference.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
    if reference.policy is not None:
        assert torch.equal(reference.policy.weight, resumed.policy.weight)


def _without_time(path) -> list[dict]:
    """The metrics records of ``path`` without their training time (which differs between runs)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records and all("elapsed" in r for r in records)
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


def test_metrics_and_summaries():
    matrix = [[0.9, 0.1], [0.5, 0.8]]
    assert average_accuracy(matrix) == pytest.approx(0.65)
    assert forgetting(matrix) == pytest.approx(0.4)
    assert forgetting([[0.7]]) == 0.0
    run = _run("sgd")
    run.train(progress=False)
    records = [run.curve[i]["accuracies"] for i in range(len(run.curve))]
    assert records == run.matrix and len(run.matrix) == 2 and len(run.matrix[0]) == 2


def test_few_shot_accuracy_adapts_a_copy_and_leaves_the_model():
    torch.manual_seed(0)
    model, task = MLP(6, (8,), 3), _tiny_tasks()[0]
    before = {n: p.clone() for n, p in model.named_parameters()}
    untrained = accuracy(model, task.eval_x, task.eval_y)
    assert untrained < 0.5  # three classes, chance level
    assert few_shot_accuracy(model, task, shots=2, steps=0, lr=0.5) == untrained
    assert few_shot_accuracy(model, task, shots=2, steps=50, lr=0.5) == 1.0  # separable: 2 per class suffice
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_meta_lr_policy_stays_in_range_and_descends_the_replay_loss():
    policy = MetaLRPolicy(initial_lr=0.1, max_lr=0.3, policy_lr=5.0)
    assert policy(torch.zeros(4)) == pytest.approx(0.1)
    assert 0.0 <= policy(torch.tensor([1e6, 1e6, 1e6, 1e6])) <= 0.3
    phi = MetaLRPolicy.features([2.0, 1.5, 1.0], task_size=1000)
    torch.testing.assert_close(phi, torch.tensor([1.5, 0.5, 0.5, 0.6], dtype=torch.float64))
    for target in (0.25, 0.03):
        policy = MetaLRPolicy(initial_lr=0.1, max_lr=0.3, policy_lr=20.0)
        for _ in range(300):
            policy.update(phi, lambda a: (a - target) ** 2)
        assert policy(phi) == pytest.approx(target, abs=0.01)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="method"):
        ContinualConfig.of("lwf")
    with pytest.raises(ValueError, match="outer must be one of"):
        ContinualConfig(outer="adam")
    with pytest.raises(ValueError, match="regulariser one of"):
        ContinualConfig(regulariser="l2")
    with pytest.raises(ValueError, match="policy"):
        ContinualConfig.of("sgd", meta_lr_policy=True)
    with pytest.raises(ValueError, match="meta_lr"):
        ContinualConfig.of("reptile").replace(meta_lr=1.5)
    with pytest.raises(ValueError, match="inner_optimizer"):
        ControllerConfig(inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="diverged"):
        _run("sgd-ewc", ewc_lambda=1e12).train(progress=False)


def test_a_checkpoint_that_is_not_a_continual_run_is_refused(tmp_path):
    from edgeadapt.sdk.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ckpt", MLP(6, (8,), 3), {"training": {}}, {}, {"iteration": 1})
    with pytest.raises(CheckpointError, match="not a continual-learning checkpoint"):
        ContinualRun.resume(tmp_path / "ckpt", _tiny_tasks())
    run = _run("reptile")
    run.train(tmp_path / "good", progress=False)
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    assert (config["continual"]["outer"], config["continual"]["regulariser"]) == ("reptile", None)
    legacy = {**config["continual"], "method": "reptile-ewc"}  # a checkpoint written before outer rules
    del legacy["outer"], legacy["regulariser"]
    assert ContinualConfig.from_json(legacy) == ContinualConfig.of("reptile-ewc", **{
        k: v for k, v in config["continual"].items() if k not in ("outer", "regulariser")})
    with pytest.raises(CheckpointError, match="does not fit"):
        ContinualRun.resume(tmp_path / "good", _tiny_tasks(n_tasks=1))


def test_a_memory_keeps_examples_of_finished_tasks_and_replays_them_beside_each_batch():
    run = _run("sgd", memory=5, batch_size=4, replay_size=3)
    assert run.config.method == "sgd+replay" and _run("reptile-ewc", memory=5).config.method == "reptile+replay+ewc"
    first, second = run.tasks
    for _ in range(run.config.updates_per_task):
        run.step()
    kept_x = run.memory.x[: len(run.memory)]
    assert len(run.memory) == 5 and run.memory.seen == len(first.train_y)
    assert all(any(torch.equal(x, row) for row in first.train_x) for x in kept_x)
    batch_x, _, logits = run._batch(second)
    assert logits is None
    from_memory = [any(torch.equal(x, row) for row in kept_x) for x in batch_x]
    from_task = [any(torch.equal(x, row) for row in second.train_x) for x in batch_x]
    assert len(batch_x) == 7 and all(from_task[:4]) and all(from_memory[4:])  # 4 new, then 3 remembered
    assert len(_run("sgd", memory=5, batch_size=4)._batch(first)[0]) == 4  # nothing remembered yet: new only
    full = _run("sgd", memory=5, batch_size=4)
    for _ in range(full.config.updates_per_task):
        full.step()
    assert len(full._batch(second)[0]) == 8  # replay_size defaults to batch_size
    with pytest.raises(ValueError, match="memory must be >= 0"):
        ContinualConfig(memory=-1)
    with pytest.raises(ValueError, match="replay_size"):
        ContinualConfig(memory=5, replay_size=0)
    with pytest.raises(ValueError, match="memory_policy must be one of"):
        ContinualConfig(memory=5, memory_policy="newest")


def test_each_draw_of_new_examples_serves_steps_per_batch_steps_beside_fresh_memory_draws():
    run = _run("sgd", memory=5, batch_size=4, steps_per_batch=3)
    for _ in range(run.config.updates_per_task):
        run.step()
    second = run.tasks[1]
    batches = [run._batch(second)[0] for _ in range(6)]
    assert all(len(b) == 8 for b in batches)
    for first, later in ((0, 1), (0, 2), (3, 4), (3, 5)):  # the same new half within a draw
        assert torch.equal(batches[first][:4], batches[later][:4])
    assert not torch.equal(batches[0][:4], batches[3][:4])  # a new draw every third batch
    assert len({tuple(b[4:].flatten().tolist()) for b in batches}) > 1  # the memory's half is drawn every time
    with pytest.raises(ValueError, match="steps_per_batch"):
        ContinualConfig(steps_per_batch=0)


@pytest.mark.parametrize("policy", ["reservoir", "balanced"])
def test_a_replay_memory_keeps_a_uniform_sample_of_everything_offered(policy):
    from edgeadapt.sdk.continual.memory import ReplayMemory

    n, capacity, trials = 40, 10, 3000
    kept = torch.zeros(n)
    for trial in range(trials):
        memory = ReplayMemory(capacity, policy, (1,), seed=trial)
        memory.offer(torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n, dtype=torch.int64))
        assert len(memory) == capacity and len(set(memory.x[:, 0].tolist())) == capacity
        kept[memory.x[:, 0].long()] += 1
    frequency = kept / trials  # each example kept with probability capacity / n = 0.25
    assert (frequency - capacity / n).abs().max() < 0.04  # 5 standard deviations of one frequency


def test_a_balanced_memory_gives_a_rare_class_its_share():
    from edgeadapt.sdk.continual.memory import ReplayMemory

    labels = torch.tensor([0] * 90 + [1] * 10)  # 90 of one class, then 10 of another
    for policy, expected in (("balanced", 10), ("reservoir", None)):
        memory = ReplayMemory(20, policy, (1,), seed=0)
        memory.offer(torch.arange(100, dtype=torch.float32)[:, None], labels)
        rare = int((memory.y[: len(memory)] == 1).sum())
        assert rare == expected if expected else rare < 10  # reservoir keeps about 20 x 10 / 100 = 2


def test_transfer_metrics_follow_lopez_paz_and_ranzato():
    from edgeadapt.sdk.continual import backward_transfer, forward_transfer

    matrix = [[0.9, 0.2, 0.1], [0.7, 0.8, 0.3], [0.6, 0.5, 0.9]]
    assert backward_transfer(matrix) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert forward_transfer(matrix, [0.1, 0.1, 0.1]) == pytest.approx(((0.2 - 0.1) + (0.3 - 0.1)) / 2)
    run = _run("sgd", memory=4)
    run.train(progress=False)
    assert len(run.initial) == 2 and all(0 <= a <= 1 for a in run.initial)


def test_a_distilling_memory_keeps_the_outputs_its_examples_had_when_offered():
    run = _run("reptile", memory=6, distill=1.0)
    for _ in range(run.config.updates_per_task):
        run.step()
    kept = len(run.memory)
    with torch.no_grad():
        assert torch.allclose(run.memory.logits[:kept], run.model(run.memory.x[:kept]))  # the slow weights scored
    x, y, targets = run._batch(run.tasks[1])
    assert targets.shape == (4, 3) and len(x) == 8
    plain = run.loss((x, y, None))
    assert torch.isclose(run.loss((x, y, targets)), plain)  # the weights that gave the logits give them still
    assert torch.isclose(run.loss((x, y, targets + 1.0)), plain + 1.0)  # distill x mean squared error of the logits
    with pytest.raises(ValueError, match="distill needs a memory"):
        ContinualConfig(distill=1.0)


def test_a_replay_memory_refuses_a_state_that_does_not_fit():
    from edgeadapt.sdk.continual.memory import ReplayMemory

    memory = ReplayMemory(5, "reservoir", (2,), seed=0)
    memory.offer(torch.ones(3, 2), torch.tensor([0, 1, 0]))
    tensors, state = memory.state()
    for edit in ({"size": 7}, {"size": "x"}, {"rng": "{}"}):
        with pytest.raises(CheckpointError):
            ReplayMemory(5, "reservoir", (2,), seed=0).load(tensors, {**state, **edit})
    restored = ReplayMemory(5, "reservoir", (2,), seed=0)
    restored.load(tensors, state)
    assert len(restored) == 3 and restored.seen == 3 and restored.seen_per_class == memory.seen_per_class
