"""Frozen layers computed once per example (edgeadapt.sdk.frozen_layers): the same tasks, the same steps, the same
scores as recomputing them per task; and what the cache does not change."""

import shutil

import numpy as np
import pytest
import torch

from edgeadapt.sdk import Conv4, MetaConfig, evaluate, meta_train
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.frozen_layers import adapted_part, cache_frozen_layers, encode, encoded_part, part_name
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain
from edgeadapt.sdk.tasks import EpisodeSampler

from helpers import labelled_dataset


def _model(seed: int = 0) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(ways=5, hidden=8).eval()


def _sampler(seed: int = 0) -> EpisodeSampler:
    return EpisodeSampler(labelled_dataset(n_classes=10, n_drawings=8), ways=5, shots=2, query_shots=2, seed=seed)


def _config(algorithm: str, cache: bool, scope: str = "last_block", outer_lr: float = 0.5,
            head_init: str = "prototypes") -> MetaConfig:
    return MetaConfig(algorithm, inner_lr=0.1, outer_lr=outer_lr, inner_steps=2, meta_batch_size=3,
                      num_iterations=4, scope=scope, head_init=head_init, head_scale=0.5, cache_frozen=cache)


@pytest.mark.parametrize("scope, head_init", [("last_block", "prototypes"), ("head", "learned")])
def test_reptile_trains_the_same_weights_with_the_frozen_layers_cached(scope, head_init):
    plain, cached = _model(), _model()
    meta_train(plain, _sampler(), _config("reptile", False, scope, head_init=head_init), progress=False)
    meta_train(cached, _sampler(), _config("reptile", True, scope, head_init=head_init), progress=False)
    before = _model().state_dict()
    moved = [k for k, v in plain.state_dict().items() if not torch.equal(v, before[k])]
    assert moved, "Reptile moved nothing: the comparison would be empty"
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(cached.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_fomaml_with_the_cache_leaves_the_frozen_layers_and_trains_the_rest():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meta_train(model, _sampler(), _config("fomaml", True, outer_lr=0.01), progress=False)
    frozen, part = adapted_part(model, "last_block")
    frozen_names = {f"features.{i}" for i in range(len(frozen))}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.rsplit(".", 2)[0] not in frozen_names for k in changed), changed
    assert any(k.startswith("head.") or k.startswith(f"features.{len(frozen)}.") for k in changed)


def test_evaluation_scores_the_same_tasks_the_same_with_the_cache():
    model = _model(1)
    plain = evaluate(model, _sampler(5), 0.1, 2, 20, scope="last_block", head_init="prototypes", head_scale=0.5)
    cached = evaluate(model, _sampler(5), 0.1, 2, 20, scope="last_block", head_init="prototypes", head_scale=0.5,
                      cache_frozen=True)
    assert plain.scores.std() > 0  # tasks that tell methods apart, not all right or all wrong
    assert (plain.scores == cached.scores).mean() >= 0.95  # up to float rounding at an argmax tie
    assert abs(plain.mean - cached.mean) < 0.02


def test_the_part_shares_the_model_modules_and_names_them_by_the_cut():
    model = _model()
    frozen, part = adapted_part(model, "last_block")
    assert part.head is model.head and part.features[0] is model.features[len(frozen)]
    name = f"features.{len(frozen)}.0.weight"
    assert dict(part.named_parameters())[part_name(model, "last_block", name)] is dict(model.named_parameters())[name]


def test_caching_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="scope"):
        adapted_part(_model(), "all")
    with pytest.raises(ConfigError, match="EpisodeSampler"):
        cache_frozen_layers(_model(), object(), "head")
    sampler = _sampler()
    with pytest.raises(ConfigError, match="class sizes"):
        sampler.over(labelled_dataset(n_classes=10, n_drawings=7))


def test_a_cached_run_resumes_exactly_and_recaches_for_other_frozen_weights(tmp_path, monkeypatch):
    config = _config("reptile", True)
    whole = _model()
    meta_train(whole, _sampler(), config, progress=False)
    original, calls = EpisodeSampler.tasks, []

    def crashing(self, iteration, indices):  # killed while sampling the third meta-batch
        calls.append(iteration)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, iteration, indices)
    monkeypatch.setattr(EpisodeSampler, "tasks", crashing)
    with pytest.raises(KeyboardInterrupt):
        meta_train(_model(), _sampler(), config, progress=False, checkpoint_dir=tmp_path / "c", checkpoint_every=2)
    monkeypatch.setattr(EpisodeSampler, "tasks", original)
    for seed in (0, 7):  # the run's own init, and one whose frozen layers differ from the checkpoint's
        shutil.copytree(tmp_path / "c", tmp_path / f"c{seed}")
        resumed = _model(seed)
        meta_train(resumed, _sampler(), config, progress=False, checkpoint_dir=tmp_path / f"c{seed}", resume=True)
        for name, value in whole.state_dict().items():
            torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_pretraining_a_scope_trains_only_what_it_adapts_and_learns():
    classes = labelled_dataset(n_classes=5, n_drawings=8)
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8, feature_norm=10.0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen, _ = adapted_part(model, "last_block")
    config = PretrainConfig(epochs=30, batch_size=20, max_lr=1e-2, classifier="cosine", scope="last_block")
    _, history = pretrain(model, classes, config)
    changed = {k.split(".")[1] for k, v in model.state_dict().items() if k.startswith("features.")
               and not torch.equal(v, before[k])}
    assert changed == {str(len(frozen))}, changed  # the last block only, never the frozen layers
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_pretraining_a_scope_refuses_augmentation():
    with pytest.raises(ConfigError, match="augmentation"):
        PretrainConfig(augmentation="affine", scope="head")


def test_views_encode_each_example_as_stored_and_distorted_within_its_class():
    classes = labelled_dataset(n_classes=3, n_drawings=4)
    model = _model()
    _, plain = encoded_part(model, classes, "head")
    _, viewed = encoded_part(model, classes, "head", views=3, distort=lambda x: 0.5 * x)
    assert viewed.class_sizes == tuple(3 * n for n in classes.class_sizes)
    for c in range(classes.n_classes):
        own = viewed.class_examples(c)
        assert torch.equal(own[:4], plain.class_examples(c))  # the first view is the example as stored
        flipped = encode(adapted_part(model, "head")[0], classes.take([c]), distort=lambda x: 0.5 * x).examples
        assert torch.equal(own[4:8], flipped) and not torch.equal(own[4:8], own[:4])
    with pytest.raises(ConfigError, match="views"):
        encoded_part(model, classes, "head", views=2)
    with pytest.raises(ConfigError, match="views"):
        PretrainConfig(views=2)
    PretrainConfig(augmentation="photo", scope="last_block", views=2)  # distortions make the views: accepted


def test_per_parameter_rates_follow_the_parameters_into_the_cached_part():
    model = _model(2)
    frozen, _ = adapted_part(model, "last_block")
    name = next(k for k, _ in model.named_parameters() if k.startswith(f"features.{len(frozen)}."))
    rates = {name: torch.full_like(dict(model.named_parameters())[name], 3.0)}
    settings = dict(scope="last_block", head_init="prototypes", head_scale=0.5, lr_scales=rates)
    plain = evaluate(model, _sampler(5), 0.1, 2, 20, **settings)
    cached = evaluate(model, _sampler(5), 0.1, 2, 20, cache_frozen=True, **settings)
    uniform = evaluate(model, _sampler(5), 0.1, 2, 20, cache_frozen=True, **{**settings, "lr_scales": None})
    assert (plain.scores == cached.scores).mean() >= 0.95 and abs(plain.mean - cached.mean) < 0.02
    assert not np.array_equal(cached.scores, uniform.scores)  # the rates reached the part's inner loop
