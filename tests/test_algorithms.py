"""The meta-gradients against independent computations with plain autograd (float64, tiny models)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from edgeadapt.sdk import MLP, Conv4, InnerLoop
from edgeadapt.sdk.algorithms import fomaml_gradient, maml_gradient, reptile_gradient
from edgeadapt.sdk.tasks import TaskBatch
from edgeadapt.sdk.training import MetaConfig, MetaTrainer



@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _classification_batch(tasks=3, ways=3, shots=2, queries=2, features=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, ways * shots, features, generator=g)
    qx = torch.randn(tasks, ways * queries, features, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1)
    return TaskBatch(sx, sy, qx, qy)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return MLP(in_features=4, hidden=(5,), out_features=3)


def _adapt_with_autograd(model, sx, sy, lr, steps, create_graph):
    """SGD on the support set with torch.autograd.grad: an implementation independent of torch.func."""
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    fast = params
    for _ in range(steps):
        out = torch.func.functional_call(model, dict(zip(names, fast)), (sx,))
        grads = torch.autograd.grad(F.cross_entropy(out, sy), fast, create_graph=create_graph)
        fast = [p - lr * g for p, g in zip(fast, grads)]
    return dict(zip(names, fast))


def _meta_loss_autograd(model, batch, lr, steps, create_graph=True):
    losses = []
    for sx, sy, qx, qy in zip(*batch):
        fast = _adapt_with_autograd(model, sx, sy, lr, steps, create_graph)
        losses.append(F.cross_entropy(torch.func.functional_call(model, fast, (qx,)), qy))
    return torch.stack(losses).mean()


def test_maml_meta_gradient_matches_autograd_second_order():
    model, batch = _tiny_model(), _classification_batch()
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=3)
    ours = maml_gradient(inner, inner.params(), batch)
    reference = torch.autograd.grad(_meta_loss_autograd(model, batch, 0.5, 3), list(model.parameters()))
    for (name, _), ref in zip(model.named_parameters(), reference):
        torch.testing.assert_close(ours.gradient[name], ref, rtol=1e-9, atol=1e-10)


def test_maml_meta_gradient_matches_finite_differences():
    model, batch = _tiny_model(1), _classification_batch(seed=1)
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=2)
    params = inner.params()
    ours = maml_gradient(inner, params, batch).gradient
    direction = {k: torch.randn_like(v) for k, v in params.items()}
    eps = 1e-6

    def meta_loss(p):
        adapted = inner.adapt_batch(p, batch.support_x, batch.support_y)
        out = inner.forward_batch(adapted, batch.query_x)
        return F.cross_entropy(out.flatten(0, 1), batch.query_y.flatten())

    plus = meta_loss({k: v + eps * direction[k] for k, v in params.items()})
    minus = meta_loss({k: v - eps * direction[k] for k, v in params.items()})
    numeric = (plus - minus) / (2 * eps)
    analytic = sum((ours[k] * direction[k]).sum() for k in params)
    assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_fomaml_is_maml_without_second_order_terms():
    model, batch = _tiny_model(2), _classification_batch(seed=2)
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=3)
    ours = fomaml_gradient(inner, inner.params(), batch).gradient
    # Independent first-order gradient: adapt without create_graph, detach, then differentiate the query loss.
    per_task = []
    for sx, sy, qx, qy in zip(*batch):
        fast = {k: v.detach().requires_grad_() for k, v in _adapt_with_autograd(model, sx, sy, 0.5, 3, False).items()}
        loss = F.cross_entropy(torch.func.functional_call(model, fast, (qx,)), qy)
        per_task.append(dict(zip(fast, torch.autograd.grad(loss, list(fast.values())))))
    for name in ours:
        torch.testing.assert_close(ours[name], torch.stack([g[name] for g in per_task]).mean(0))
    # ...and it genuinely differs from MAML, whose second-order terms are not zero here.
    maml = maml_gradient(inner, inner.params(), batch).gradient
    assert max((maml[k] - ours[k]).abs().max() for k in ours) > 1e-4


def test_fomaml_equals_maml_when_the_inner_loop_is_empty():
    model, batch = _tiny_model(3), _classification_batch(seed=3)
    inner = InnerLoop(model, inner_lr=0.5, inner_steps=0)
    fo, so = fomaml_gradient(inner, inner.params(), batch), maml_gradient(inner, inner.params(), batch)
    for k in fo.gradient:
        torch.testing.assert_close(fo.gradient[k], so.gradient[k])


def test_reptile_one_step_one_task_is_a_scaled_sgd_step():
    model = _tiny_model(4)
    batch = _classification_batch(tasks=1, seed=4)
    reference = copy.deepcopy(model)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.3)
    F.cross_entropy(reference(batch.support_x[0]), batch.support_y[0]).backward()
    sgd.step()  # reference = theta - 0.3 * grad

    config = MetaConfig("reptile", inner_lr=0.3, outer_lr=0.25, inner_steps=1, meta_batch_size=1, num_iterations=1)

    class OneBatch:
        loss = "cross_entropy"

        def tasks(self, iteration, indices):
            assert (iteration, indices) == (0, range(1))
            return batch

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    MetaTrainer(model, OneBatch(), config).step()
    for name, p in model.named_parameters():
        expected = before[name] + 0.25 * (dict(reference.named_parameters())[name].detach() - before[name])
        torch.testing.assert_close(p.detach(), expected)


def test_reptile_direction_averages_tasks():
    model, batch = _tiny_model(5), _classification_batch(tasks=4, seed=5)
    inner = InnerLoop(model, inner_lr=0.1, inner_steps=2)
    direction = reptile_gradient(inner, inner.params(), batch).gradient
    adapted = [_adapt_with_autograd(model, sx, sy, 0.1, 2, False) for sx, sy, _, _ in zip(*batch)]
    for name, p in model.named_parameters():
        torch.testing.assert_close(direction[name], p.detach() - torch.stack([a[name] for a in adapted]).mean(0))


def test_head_scope_adapts_only_the_head_and_matches_full_model():
    torch.manual_seed(6)
    model = Conv4(ways=3, hidden=4)
    g = torch.Generator().manual_seed(6)
    sx, sy = torch.randn(6, 1, 28, 28, generator=g), torch.arange(3).repeat_interleave(2)
    head = InnerLoop(model, 0.5, 3, scope="head")
    adapted = head.inner_update(head.params(), sx, sy)
    for name, p in model.named_parameters():
        same = torch.equal(adapted[name], p.detach())
        assert same != name.startswith("head."), name
    # Reference: the same SGD on head parameters only, through the whole model with autograd.
    fast = {k: v.detach().clone().requires_grad_(k.startswith("head.")) for k, v in model.named_parameters()}
    for _ in range(3):
        loss = F.cross_entropy(torch.func.functional_call(model, fast, (sx,)), sy)
        grads = torch.autograd.grad(loss, [fast["head.weight"], fast["head.bias"]])
        for k, gk in zip(("head.weight", "head.bias"), grads):
            fast[k] = (fast[k] - 0.5 * gk).detach().requires_grad_()
    for k in ("head.weight", "head.bias"):
        torch.testing.assert_close(adapted[k], fast[k].detach())


def test_predictions_are_non_transductive():
    torch.manual_seed(7)
    model = Conv4(ways=5, hidden=8)
    inner = InnerLoop(model, 0.1, 1)
    g = torch.Generator().manual_seed(7)
    queries = torch.randn(10, 1, 28, 28, generator=g)
    alone = inner.forward_with_weights(queries[:1], inner.params())
    together = inner.forward_with_weights(queries, inner.params())[:1]
    other = inner.forward_with_weights(torch.cat([queries[:1], 5 * queries[1:]]), inner.params())[:1]
    torch.testing.assert_close(alone, together)
    torch.testing.assert_close(alone, other)


def _seeded_inner_loop(seed: int, ways: int, scope: str) -> tuple[InnerLoop, torch.Generator]:
    """A 3-step inner loop (rate 0.5) on a small Conv4 seeded by ``seed``, and a generator for its task's data."""
    torch.manual_seed(seed)
    return InnerLoop(Conv4(ways=ways, hidden=4), 0.5, 3, scope=scope), torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("scope", ["all", "head"])
def test_padding_with_masks_does_not_change_adaptation(scope):
    """A 3-way 2-shot task padded to 5-way 4-shot adapts exactly as the unpadded task does."""
    inner, g = _seeded_inner_loop(8, ways=5, scope=scope)
    model = inner.model
    sx, sy = torch.randn(6, 1, 28, 28, generator=g), torch.arange(3).repeat_interleave(2)
    padded_x = torch.cat([sx, torch.randn(14, 1, 28, 28, generator=g)])
    padded_y = torch.cat([sy, torch.zeros(14, dtype=torch.long)])
    example_mask = torch.cat([torch.ones(6), torch.zeros(14)])
    class_mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])

    def reference_loss(params):  # the 3-way model: only the first three outputs exist
        logits = torch.func.functional_call(model, params, (sx,))[:, :3]
        return F.cross_entropy(logits, sy)

    expected = inner.params()
    for _ in range(3):
        grads = torch.func.grad(reference_loss)({k: v for k, v in expected.items()})
        expected = {k: v - 0.5 * grads[k] if inner.is_adapted(k) else v for k, v in expected.items()}
    adapted = inner.inner_update(inner.params(), padded_x, padded_y, example_mask=example_mask, class_mask=class_mask)
    for k in expected:
        torch.testing.assert_close(adapted[k], expected[k])


def test_padding_labels_and_derived_class_mask_equal_explicit_masks():
    from edgeadapt.sdk.inner_loop import PAD_LABEL

    torch.manual_seed(9)
    inner = InnerLoop(Conv4(ways=5, hidden=4), 0.5, 2)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(10, 1, 28, 28, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2] + [PAD_LABEL] * 4)
    explicit = inner.inner_update(inner.params(), x, y.clamp(min=0), example_mask=(y >= 0).double(),
                                  class_mask=torch.tensor([1.0, 1, 1, 0, 0]))
    derived = inner.inner_update(inner.params(), x, y)
    for k in explicit:
        torch.testing.assert_close(derived[k], explicit[k])


@pytest.mark.parametrize("scope", ["all", "head"])
def test_vectorised_training_adaptation_equals_the_exported_routine(scope):
    """adapt_batch (vmap + autograd, used in training) gives each task what inner_update (torch.func, exported) gives."""
    inner, g = _seeded_inner_loop(10, ways=3, scope=scope)
    sx = torch.randn(4, 6, 1, 28, 28, generator=g)
    sy = torch.stack([torch.randperm(3, generator=g).repeat_interleave(2) for _ in range(4)])
    batched = inner.adapt_batch(inner.params(), sx, sy)
    for task in range(4):
        alone = inner.inner_update(inner.params(), sx[task], sy[task])
        for name in alone:
            torch.testing.assert_close(batched[name][task], alone[name])
    assert not any(v.requires_grad for v in batched.values())


@pytest.mark.parametrize("scope", ["all", "head"])
def test_task_by_task_first_order_adaptation_equals_the_exported_routine(scope):
    """adapt_batch with vectorise=False under no_grad (Reptile, FOMAML on a CPU: one task at a time, plain
    autograd, channels-last) gives each task what inner_update (torch.func, exported) gives."""
    torch.manual_seed(11)
    model = Conv4(ways=3, hidden=4)
    inner = InnerLoop(model, 0.5, 3, scope=scope, vectorise=False)
    g = torch.Generator().manual_seed(11)
    sx = torch.randn(3, 6, 1, 28, 28, generator=g)
    sy = torch.stack([torch.randperm(3, generator=g).repeat_interleave(2) for _ in range(3)])
    calls = []
    original = InnerLoop.inner_update

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("first_order"))
        return original(self, *args, **kwargs)

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(InnerLoop, "inner_update", spy)
        each = inner.adapt_batch(inner.params(), sx, sy)
    assert calls == [True] * 3
    for task in range(3):
        alone = inner.inner_update(inner.params(), sx[task], sy[task])
        for name in alone:
            assert each[name][task].is_contiguous()
            torch.testing.assert_close(each[name][task], alone[name])


@pytest.mark.parametrize("gradient", [reptile_gradient, fomaml_gradient])
def test_first_order_meta_gradients_do_not_depend_on_vectorising(gradient):
    torch.manual_seed(12)
    model = Conv4(ways=3, hidden=4)
    g = torch.Generator().manual_seed(12)
    sy = torch.stack([torch.randperm(3, generator=g).repeat_interleave(2) for _ in range(3)])
    batch = TaskBatch(torch.randn(3, 6, 1, 28, 28, generator=g), sy, torch.randn(3, 6, 1, 28, 28, generator=g), sy)
    vmapped = gradient(InnerLoop(model, 0.5, 2), {k: v.detach() for k, v in model.named_parameters()}, batch)
    each = gradient(InnerLoop(model, 0.5, 2, vectorise=False), {k: v.detach() for k, v in model.named_parameters()},
                    batch)
    for name in vmapped.gradient:
        torch.testing.assert_close(each.gradient[name], vmapped.gradient[name])
    assert each.query_loss == pytest.approx(vmapped.query_loss)


def test_the_trainer_adapts_task_by_task_on_a_cpu_unless_told():
    sampler = type("S", (), {"loss": "mse"})()
    config = MetaConfig("reptile", inner_lr=0.1, outer_lr=1.0, inner_steps=1, meta_batch_size=2, num_iterations=1)
    assert not MetaTrainer(MLP(), sampler, config).inner.vectorise
    assert MetaTrainer(MLP(), sampler, config, vectorise=True).inner.vectorise
