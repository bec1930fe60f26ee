"""Supervised pretraining: it learns, its checkpoints round-trip, and a resumed run equals an uninterrupted one."""

from dataclasses import replace

import pytest
import torch

from edgeadapt.sdk import Conv4, InnerLoop, load_checkpoint
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.augment import augment
from edgeadapt.sdk.checkpoint import CheckpointError, initialise_from
from edgeadapt.sdk.datasets import ClassDataset
from edgeadapt.sdk.pretraining import CosineClassifier, PretrainConfig, Pretrainer, pretrain

from helpers import labelled_dataset

CONFIG = PretrainConfig(epochs=2, batch_size=16, max_lr=0.01, augmentation="affine")


def _model(classes: int, feature_norm: float | None = None, norm: str = "group") -> Conv4:
    torch.manual_seed(0)
    return Conv4(ways=classes, hidden=4, activation="elu", feature_norm=feature_norm, norm=norm)


def _patterns(n_classes: int, n_drawings: int) -> ClassDataset:
    """Each class a random binary pattern, each drawing of it with a little noise."""
    g = torch.Generator().manual_seed(0)
    base = (torch.rand(n_classes, 1, 1, 28, 28, generator=g) > 0.7).float()
    noise = 0.1 * torch.rand(n_classes, n_drawings, 1, 28, 28, generator=g)
    return ClassDataset.dense((base + noise).contiguous(), tuple(map(str, range(n_classes))), ("a",) * n_classes)


def test_pretraining_learns_the_classes():
    classes = _patterns(n_classes=6, n_drawings=8)
    model, history = pretrain(_model(6), classes, PretrainConfig(epochs=6, batch_size=16, max_lr=0.02,
                                                                 augmentation="none"), progress=False)
    assert len(history) == 6 * 3
    x = classes.images.flatten(0, 1)
    accuracy = (model(x).argmax(1) == torch.arange(6).repeat_interleave(8)).float().mean()
    assert accuracy > 0.9 and history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_resumed_pretraining_equals_an_uninterrupted_run(tmp_path, norm):
    classes = labelled_dataset(n_classes=5, n_drawings=6)
    straight, _ = pretrain(_model(5, norm=norm), classes, CONFIG, progress=False)
    run = Pretrainer(_model(5, norm=norm), classes, CONFIG)
    for _ in range(3):  # stop mid-epoch (2 steps per epoch)
        run.step()
    run.save(tmp_path / "checkpoint")
    resumed, history = pretrain(_model(5, norm=norm), classes, CONFIG, checkpoint_dir=tmp_path / "checkpoint",
                                resume=True, progress=False)
    assert len(history) == 4
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    reloaded, config = load_checkpoint(tmp_path / "checkpoint")
    assert config["pretraining"]["augmentation"] == "affine"
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in resumed.state_dict().items())


def test_batch_norm_pretraining_keeps_running_statistics_that_the_inner_loop_uses():
    classes = _patterns(n_classes=6, n_drawings=8)
    config = PretrainConfig(epochs=6, batch_size=16, max_lr=0.02, augmentation="none")
    model, _ = pretrain(_model(6, norm="batch"), classes, config, progress=False)
    assert not model.training  # pretrain hands the model back in eval mode: running statistics from now on
    statistics = model.features[0][1]
    assert not torch.allclose(statistics.running_mean, torch.zeros_like(statistics.running_mean))
    x = classes.images.flatten(0, 1)
    assert (model(x).argmax(1) == torch.arange(6).repeat_interleave(8)).float().mean() > 0.9
    # one example's output does not depend on the others it is batched with (non-transductive)
    assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)
    inner = InnerLoop(model, inner_lr=0.1, inner_steps=1, scope="head")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inner.adapt_batch(inner.params(), x[None, :12], torch.arange(6).repeat_interleave(8)[None, :12])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # statistics untouched
    with pytest.raises(ConfigError, match="eval"):
        InnerLoop(model.train(), inner_lr=0.1, inner_steps=1)


def test_frozen_norm_statistics_keep_the_running_statistics_it_started_with():
    classes = _patterns(n_classes=6, n_drawings=8)
    config = PretrainConfig(epochs=2, batch_size=16, max_lr=0.02, augmentation="none", norm_statistics="frozen")
    start = _model(6, norm="batch")
    norms = [m for m in start.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():  # imported weights: statistics that are not a fresh layer's
        for m in norms:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    before = [(m.running_mean.clone(), m.running_var.clone(), m.weight.clone()) for m in norms]
    model, _ = pretrain(start, classes, config, progress=False)
    after = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
               for m, (mean, var, _) in zip(after, before))
    assert any(not torch.equal(m.weight, weight) for m, (_, _, weight) in zip(after, before))  # still trained
    batch = pretrain(_model(6, norm="batch"), classes, replace(config, norm_statistics="batch"), progress=False)[0]
    assert not torch.equal(next(m for m in batch.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_var,
                           torch.ones(4))


def test_conv4_rejects_an_unknown_normalisation():
    with pytest.raises(ConfigError, match="norm"):
        Conv4(norm="layer")


COSINE = PretrainConfig(epochs=2, batch_size=16, max_lr=0.01, augmentation="affine", classifier="cosine")


def test_cosine_pretraining_learns_and_its_head_computes_the_classifier():
    classes = _patterns(n_classes=6, n_drawings=8)
    config = PretrainConfig(epochs=6, batch_size=16, max_lr=0.02, augmentation="none", classifier="cosine")
    run = Pretrainer(_model(6, feature_norm=10.0), classes, config)
    x = classes.images.flatten(0, 1)
    for _ in range(run.total_steps):
        run.step()
    cosine_logits = run.classifier(x).detach()
    model, _ = pretrain(_model(6, feature_norm=10.0), classes, config, progress=False)
    assert torch.allclose(model(x), cosine_logits, atol=1e-4)  # the head now holds the classifier exactly
    assert all(p.requires_grad for p in model.parameters())
    norms = model.features(x).norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, 10.0), atol=1e-4)
    assert (model(x).argmax(1) == torch.arange(6).repeat_interleave(8)).float().mean() > 0.9


def test_resumed_cosine_pretraining_equals_an_uninterrupted_run(tmp_path):
    classes = labelled_dataset(n_classes=5, n_drawings=6)
    straight, _ = pretrain(_model(5, 10.0), classes, COSINE, progress=False)
    run = Pretrainer(_model(5, 10.0), classes, COSINE)
    for _ in range(3):
        run.step()
    run.save(tmp_path / "checkpoint")
    resumed, _ = pretrain(_model(5, 10.0), classes, COSINE, checkpoint_dir=tmp_path / "checkpoint", resume=True,
                          progress=False)
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    reloaded, config = load_checkpoint(tmp_path / "checkpoint")
    assert config["pretraining"]["classifier"] == "cosine" and reloaded.config["feature_norm"] == 10.0
    linear = Pretrainer(_model(5, 10.0), classes, CONFIG)
    linear.save(tmp_path / "linear")
    with pytest.raises(CheckpointError, match="cosine"):
        Pretrainer(_model(5, 10.0), classes, COSINE).restore(tmp_path / "linear")


def test_a_cosine_classifier_needs_normalised_features():
    with pytest.raises(ValueError, match="feature_norm"):
        Pretrainer(_model(5), labelled_dataset(5, 6), COSINE)
    with pytest.raises(ValueError, match="feature_norm"):
        Conv4(feature_norm=0.0)


def test_a_meta_checkpoint_is_not_a_pretraining_checkpoint(tmp_path):
    from edgeadapt.sdk import save_checkpoint

    save_checkpoint(tmp_path / "c", _model(5), {}, {}, {"iteration": 0})
    with pytest.raises(CheckpointError, match="not a pretraining checkpoint"):
        Pretrainer(_model(5), labelled_dataset(5, 6), CONFIG).restore(tmp_path / "c")


def test_initialise_from_copies_the_backbone_and_keeps_a_head_of_another_size(tmp_path):
    from edgeadapt.sdk import save_checkpoint

    source = _model(7)
    save_checkpoint(tmp_path / "c", source)
    target = Conv4(ways=3, hidden=4, activation="elu")
    assert initialise_from(target, tmp_path / "c") == ["head.bias", "head.weight"]
    assert torch.equal(target.features[0][0].weight, source.features[0][0].weight)
    with pytest.raises(CheckpointError, match="backbone"):
        initialise_from(Conv4(ways=3, hidden=8), tmp_path / "c")


@pytest.mark.parametrize("kind", ["shift", "affine"])
def test_augmentation_is_reproducible_and_keeps_shape(kind):
    x = labelled_dataset(2, 3).images.flatten(0, 1)
    a = augment(x, kind, torch.Generator().manual_seed(1))
    b = augment(x, kind, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(augment(x, "none", torch.Generator()), x)


def test_pretrain_config_rejects_bad_values():
    for bad in ({"epochs": 0}, {"max_lr": 0.0}, {"augmentation": "flip"}, {"label_smoothing": 1.0},
                {"classifier": "arcface"}, {"margin": 0.1}, {"classifier": "cosine", "margin": -0.1},
                {"norm_statistics": "ghost"}):
        with pytest.raises(ValueError):
            PretrainConfig(**bad)


def test_a_margin_lowers_only_the_targets_logit_by_its_scaled_cosine():
    classifier = CosineClassifier(features=4, classes=3)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    lowered = classifier.with_margin(logits, labels, 0.25)
    drop = (logits - lowered).detach()
    assert torch.allclose(drop.gather(1, labels[:, None]), torch.full((5, 1), 2.5), atol=1e-5)  # scale 10 x 0.25
    assert drop.sum() == pytest.approx(5 * 2.5, abs=1e-4)  # and no other logit


def test_margin_pretraining_learns_and_resumes_exactly(tmp_path):
    classes = _patterns(n_classes=6, n_drawings=8)
    config = PretrainConfig(epochs=6, batch_size=16, max_lr=0.02, augmentation="none", classifier="cosine",
                            margin=0.2)
    model, history = pretrain(_model(6, 10.0, "batch"), classes, config, progress=False)
    x = classes.images.flatten(0, 1)
    assert (model(x).argmax(1) == torch.arange(6).repeat_interleave(8)).float().mean() > 0.9
    plain = Pretrainer(_model(6, 10.0, "batch"), classes, replace(config, margin=0.0))
    assert plain.step()["loss"] < history[0]["loss"]  # the margin makes the same first batch's loss larger
    run = Pretrainer(_model(6, 10.0, "batch"), classes, config)
    for _ in range(5):
        run.step()
    run.save(tmp_path / "checkpoint")
    resumed, _ = pretrain(_model(6, 10.0, "batch"), classes, config, checkpoint_dir=tmp_path / "checkpoint",
                          resume=True, progress=False)
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in model.state_dict().items())
