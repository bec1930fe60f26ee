"""Per-parameter inner learning rates: the step they take, their checks, Adam's frozen preconditioner, and their
way from a training run through its checkpoint into an exported artifact."""

import numpy as np
import pytest
import torch
from helpers import labelled_dataset
from safetensors.torch import save_file

from edgeadapt.export import export_artifact
from edgeadapt.runtime import load
from edgeadapt.sdk import Conv4, EpisodeSampler, InnerLoop, train_maml
from edgeadapt.sdk.checkpoint import LR_SCALES, load_lr_scales, load_training_state
from edgeadapt.sdk.datasets.glyphs import make_glyphs
from edgeadapt.sdk.errors import CheckpointError, ConfigError
from edgeadapt.sdk.preconditioner import adam_lr_scales
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain


def _task(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 28, 28, generator=g), torch.tensor([0, 0, 1, 1, 2, 2])


def test_one_step_is_sgd_with_elementwise_rates():
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4, activation="elu")
    scales = {n: 0.5 + torch.rand(p.shape) for n, p in model.named_parameters() if n.startswith("features.3.")}
    scales["head.bias"] = torch.tensor(3.0)
    inner = InnerLoop(model, inner_lr=0.1, inner_steps=1, scope="last_block", lr_scales=scales)
    x, y = _task()
    adapted = inner.inner_update(inner.params(), x, y)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    for name, p in model.named_parameters():
        expected = p - 0.1 * scales.get(name, 1.0) * grads[name] if inner.is_adapted(name) else p
        torch.testing.assert_close(adapted[name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(adapted["features.3.0.weight"], model.features[3][0].weight)


def test_unit_rates_change_nothing():
    torch.manual_seed(1)
    model = Conv4(ways=3, hidden=4, activation="elu")
    ones = {n: torch.ones(p.shape) for n, p in model.named_parameters()}
    x, y = _task(1)
    plain = InnerLoop(model, 0.2, 2, head_init="prototypes", ways=3)
    rated = InnerLoop(model, 0.2, 2, head_init="prototypes", ways=3,
                      lr_scales={k: v for k, v in ones.items() if not k.startswith("head.")})
    for k, v in plain.inner_update(plain.params(), x, y).items():
        torch.testing.assert_close(rated.inner_update(rated.params(), x, y)[k], v)


@pytest.mark.parametrize("scales, message", [
    ({"features.0.0.weight": torch.tensor(1.0)}, "not a parameter this inner loop adapts"),
    ({"nope": torch.tensor(1.0)}, "not a parameter"),
    ({"features.3.0.bias": torch.ones(3)}, "shape"),
    ({"features.3.0.bias": torch.tensor(-1.0)}, "finite rates >= 0"),
    ({"features.3.0.bias": torch.tensor(float("nan"))}, "finite rates >= 0"),
    ({"head.weight": torch.ones(3, 4)}, "one rate"),
])
def test_bad_rates_are_config_errors(scales, message):
    model = Conv4(ways=3, hidden=4)
    with pytest.raises(ConfigError, match=message):
        InnerLoop(model, 0.1, 1, scope="last_block", head_init="prototypes", ways=3, lr_scales=scales)


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_adam_rates_are_its_normalised_second_moments(tmp_path, classifier):
    classes = make_glyphs(6, n_drawings=4)
    model = Conv4(ways=6, hidden=4, activation="elu", feature_norm=10.0 if classifier == "cosine" else None)
    pretrain(model, classes, PretrainConfig(epochs=2, batch_size=8, classifier=classifier),
             checkpoint_dir=tmp_path / "checkpoint", progress=False)
    names = ["features.3.0.weight", "features.3.1.bias"]
    rates = adam_lr_scales(tmp_path / "checkpoint", names)
    tensors, _ = load_training_state(tmp_path / "checkpoint")
    index = {n: i for i, (n, _) in enumerate(model.named_parameters())}  # the head follows the features
    raw = {n: 1.0 / (tensors[f"optimizer.{index[n]}.exp_avg_sq"].sqrt() + 1e-8) for n in names}
    mean = torch.cat([v.flatten() for v in raw.values()]).mean()
    for n in names:
        torch.testing.assert_close(rates[n], raw[n] / mean)
    per_tensor = adam_lr_scales(tmp_path / "checkpoint", names, "tensor")
    assert all(v.shape == () for v in per_tensor.values())
    torch.testing.assert_close(torch.stack(list(per_tensor.values())).mean(), torch.tensor(1.0))
    with pytest.raises(ConfigError, match="granularity"):
        adam_lr_scales(tmp_path / "checkpoint", names, "layer")


def _rated_run(tmp_path, lr_scales, iterations=2, **options):
    """A tiny Reptile run on glyphs whose last block steps at ``lr_scales``, checkpointed at ``tmp_path``."""
    torch.manual_seed(0)
    sampler = EpisodeSampler(labelled_dataset(), ways=3, shots=2, query_shots=1, seed=1)
    model = Conv4(ways=3, hidden=8, activation="elu")
    return train_maml(model, sampler, 0.3, 0.5, 2, "reptile", 2, iterations, scope="last_block",
                      head_init="prototypes", lr_scales=lr_scales, checkpoint_dir=tmp_path, progress=False,
                      **options)[0]


def _last_block_rates(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Conv4(ways=3, hidden=8, activation="elu")
    return {n: 0.2 + 2 * torch.rand(p.shape, generator=g) for n, p in model.named_parameters()
            if n.startswith("features.3.")}


def test_rates_are_saved_with_the_run_and_checked_on_resume(tmp_path):
    rates = _last_block_rates()
    _rated_run(tmp_path / "run", rates)
    saved = load_lr_scales(tmp_path / "run")
    assert saved.keys() == rates.keys() and all(torch.equal(saved[k], rates[k]) for k in rates)
    _rated_run(tmp_path / "uniform", None)
    assert load_lr_scales(tmp_path / "uniform") is None
    with pytest.raises(ConfigError, match="other per-parameter inner rates"):
        _rated_run(tmp_path / "run", _last_block_rates(1), iterations=3, resume=True)
    with pytest.raises(ConfigError, match="other per-parameter inner rates"):
        _rated_run(tmp_path / "run", None, iterations=3, resume=True)


def test_rates_files_that_were_tampered_with_or_added_are_refused(tmp_path):
    _rated_run(tmp_path / "rated", _last_block_rates())
    (tmp_path / "rated" / LR_SCALES).write_bytes((tmp_path / "rated" / LR_SCALES).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_lr_scales(tmp_path / "rated")
    _rated_run(tmp_path / "uniform", None)
    save_file({"features.3.0.weight": torch.ones(1)}, tmp_path / "uniform" / LR_SCALES)
    with pytest.raises(CheckpointError, match="not listed in the manifest"):
        load_lr_scales(tmp_path / "uniform")


def test_an_exported_artifact_adapts_with_the_runs_rates(tmp_path):
    """Checkpoint -> artifact -> runtime: the device steps each parameter at the rate the run trained with."""
    rates = _last_block_rates()
    model = _rated_run(tmp_path / "run", rates)
    export_artifact(tmp_path / "run", tmp_path / "artifact", max_ways=3, max_shots=2, executorch=False)
    learner = load(tmp_path / "artifact")
    assert learner.manifest["per_parameter_rates"] == sorted(rates)
    g = torch.Generator().manual_seed(5)
    support, queries = torch.rand(6, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    device = learner.adapt(support.numpy(), labels.tolist()).predict_proba(queries.numpy())
    rated = InnerLoop(model, 0.3, 2, scope="last_block", head_init="prototypes", ways=3, lr_scales=rates)
    np.testing.assert_allclose(device, rated.probabilities(support, labels, queries).numpy(), atol=1e-4, rtol=0)
    uniform = InnerLoop(model, 0.3, 2, scope="last_block", head_init="prototypes", ways=3)
    assert np.abs(device - uniform.probabilities(support, labels, queries).numpy()).max() > 1e-3
