"""The seams other people's data and models come through: an input description from dataset to device, the
checked model convention, and registries that user modules extend through ``--import``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgeadapt.runtime as rt
from edgeadapt.cli import main
from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.runtime.preprocess import prepare
from edgeadapt.sdk import Conv4, InnerLoop
from edgeadapt.sdk.contract import Backbone, check_backbone
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.backbones import BACKBONES
from edgeadapt.sdk.recipes import DATASETS, make_sampler

ROOT = Path(__file__).resolve().parent.parent


def test_an_input_description_round_trips_and_refuses_nonsense():
    spec = InputSpec((3, 8, 6), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.25), resize="lanczos")
    assert InputSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.bounds() == pytest.approx(((0 - 0.5) / 0.2, (1 - 0.4) / 0.2))  # lowest of channel 0, highest of 1
    for bad, message in [({"shape": (3, 8, 8), "polarity": "ink_high"}, "polarity is for strokes only"),
                         ({"shape": (3, 8, 8), "mean": (0.5,), "std": (0.2,)}, "need 3 finite values"),
                         ({"shape": (3, 8, 8), "mean": (0.5, 0.5, 0.5)}, "mean and std come together"),
                         ({"shape": (8,), "layout": "CHW"}, "does not fit shape"),
                         ({"shape": (1, 8, 8), "modality": "smell"}, "modality must be one of"),
                         ({"shape": (1, 8, 8), "value_range": (1.0, 0.0)}, "low < high"),
                         ({"shape": (1, 8, 8), "colour": "red"}, "only")]:
        with pytest.raises(rt.InputError, match=message):
            InputSpec.from_json(bad)


def test_an_artifact_written_before_input_descriptions_reads_as_strokes():
    legacy = {"input_shape": [1, 28, 28], "input_dtype": "float32",
              "input": {"range": [0.0, 1.0], "polarity": "ink_high", "resize": "lanczos"}}
    spec = InputSpec.from_manifest(legacy)
    assert (spec.modality, spec.polarity, spec.shape) == ("strokes", "ink_high", (1, 28, 28))
    assert InputSpec.from_manifest(rt.load(ROOT / "models" / "omniglot-conv4").manifest) == spec


def test_prepare_never_inverts_a_photo_and_normalises_it():
    spec = InputSpec((3, 4, 4), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    manifest = {"input_shape": list(spec.shape), "input_dtype": "float32", "input": spec.manifest_entry()}
    white = np.full((4, 4, 3), 255, np.uint8)
    assert np.allclose(prepare([white], manifest), (1.0 - 0.5) / 0.25)  # white stays white: not inverted
    with pytest.raises(rt.InputError, match="ink applies to drawings"):
        prepare([white], manifest, ink="dark")
    strokes = {"input_shape": [1, 4, 4], "input_dtype": "float32",
               "input": InputSpec((1, 4, 4), modality="strokes", polarity="ink_high").manifest_entry()}
    assert np.allclose(prepare([white[:, :, 0]], strokes), 0.0)  # white paper, dark ink: paper becomes 0
    audio = {"input_shape": [1, 4, 4], "input_dtype": "float32",
             "input": InputSpec((1, 4, 4), modality="audio_features").manifest_entry()}
    with pytest.raises(rt.InputError, match="prepare makes pictures"):
        prepare([white], audio)


class _Renamed(nn.Module):
    """torchvision's naming: the head is called classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Inconsistent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten())
        self.head = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(2 * x))  # more than head(features(x))


def test_the_export_time_self_check_holds_inputs_the_model_takes(tmp_path):
    """An input range other than [0, 1] (ImageNet's (p - 128) / 128): the reference task is drawn within it, so
    ``self_test`` passes the runtime's range check and reproduces PyTorch."""
    from edgeadapt.export import export_artifact
    from edgeadapt.sdk import save_checkpoint

    torch.manual_seed(0)
    spec = InputSpec((3, 16, 16), value_range=(-1.0, 127 / 128))
    training = {"algorithm": "fomaml", "inner_lr": 0.1, "inner_steps": 1, "scope": "head", "loss": "cross_entropy"}
    save_checkpoint(tmp_path / "ckpt", Conv4(ways=3, in_channels=3, hidden=4, image_size=16),
                    {"training": training, "data": {"input": spec.to_json()}})
    learner = rt.load(export_artifact(tmp_path / "ckpt", tmp_path / "model", max_shots=2, executorch=False))
    assert learner.self_test() <= 1e-5
    reference = np.load(tmp_path / "model" / "selfcheck.npz")
    assert -1.0 <= reference["support_x"].min() < -0.9 and 0.9 < reference["query_x"].max() <= 127 / 128


def test_the_model_convention_is_checked_with_a_probe_and_says_what_to_change():
    check_backbone(Conv4(ways=3, hidden=4).eval(), (1, 28, 28))
    with pytest.raises(ConfigError, match="wrap the network: edgeadapt.sdk.contract.Backbone"):
        check_backbone(_Renamed(), (3, 8, 8))
    with pytest.raises(ConfigError, match=r"forward\(x\) is not head\(features\(x\)\)"):
        check_backbone(_Inconsistent(), (3, 2, 2))
    with pytest.raises(ConfigError, match="not the head's 7 features"):
        check_backbone(Backbone(nn.Flatten(), nn.Linear(7, 2)), (3, 2, 2))
    renamed = _Renamed()
    wrapped = Backbone(renamed.features, renamed.classifier)
    check_backbone(wrapped, (3, 8, 8))
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(wrapped(x), renamed(x))


def test_the_inner_loop_refuses_a_model_against_the_convention_on_its_first_tasks():
    inner = InnerLoop(_Inconsistent(), inner_lr=0.1, inner_steps=1, scope="head")
    with pytest.raises(ConfigError, match="not head"):
        inner.adapt_batch(inner.params(), torch.rand(1, 4, 3, 2, 2), torch.tensor([[0, 1, 0, 1]]))


PLUGIN = '''
    """A user's module: a dataset of small RGB pictures and a model of their own, registered on import."""
    import torch
    from torch import nn

    from edgeadapt.runtime.format.inputs import InputSpec
    from edgeadapt.sdk.backbones import register_backbone
    from edgeadapt.sdk.contract import Backbone
    from edgeadapt.sdk.datasets.base import ClassDataset
    from edgeadapt.sdk.models import register_model
    from edgeadapt.sdk.recipes import DatasetRecipe, register_dataset


    def pictures(data, split):
        generator = torch.Generator().manual_seed({"train": 0, "validation": 1, "all": 2}[split])
        centres = torch.rand(24, 1, 3, 1, 1, generator=generator)
        images = (centres + 0.05 * torch.randn(24, 6, 3, 10, 12, generator=generator)).clamp(0, 1)
        spec = InputSpec((3, 10, 12), mean=(0.5, 0.5, 0.5), std=(0.3, 0.3, 0.3), resize="lanczos")
        names = tuple(f"{split}-{c}" for c in range(24))
        return ClassDataset.dense(((images - 0.5) / 0.3).float(), names, names, spec)


    @register_model
    class Tiny(Backbone):
        def __init__(self, ways=5, hidden=8):
            self.config = {"ways": ways, "hidden": hidden}
            super().__init__(nn.Sequential(nn.Conv2d(3, hidden, 3), nn.ELU(), nn.AdaptiveAvgPool2d(1),
                                           nn.Flatten()), nn.Linear(hidden, ways))


    register_backbone("tiny", lambda spec, settings: Tiny(settings.ways, 8))
    register_dataset(DatasetRecipe("tiny-rgb", classes=pictures, model="tiny", help="small RGB pictures"))
'''


def test_a_users_dataset_and_model_go_from_import_to_the_device(tmp_path, monkeypatch, capsys, request):
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: (DATASETS.pop("tiny-rgb", None), BACKBONES.pop("tiny", None)))  # as others know them
    run, artifact = tmp_path / "run", tmp_path / "artifact"
    assert main(["train", "--import", "my_plugin", "--dataset", "tiny-rgb", "--ways", "3", "--iterations", "2",
                 "--scope", "head", "--head-init", "prototypes", "--inner-steps", "1", "--eval-tasks", "4",
                 "--out", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    assert "tiny-rgb" in DATASETS
    assert main(["export", "--import", "my_plugin", str(run / "checkpoint"), "-o", str(artifact),
                 "--max-shots", "2", "--no-executorch"]) == 0, capsys.readouterr().err
    learner = rt.load(artifact)
    spec = InputSpec.from_manifest(learner.manifest)
    assert (spec.modality, spec.shape, spec.polarity, spec.mean) == ("image", (3, 10, 12), None, (0.5, 0.5, 0.5))
    photos = [np.full((20, 24, 3), v, np.uint8) for v in (10, 120, 250)]
    adapted = learner.adapt(prepare(photos, learner.manifest), ["dark", "grey", "light"])
    assert list(adapted.predict(prepare(photos, learner.manifest))) == ["dark", "grey", "light"]
    sampler, data = make_sampler("tiny-rgb", None, "validation", 3, 1, 1, 0, training=False)
    assert data["input"] == spec.to_json() and sampler is not None


def test_an_unknown_import_is_one_line_and_exit_2(capsys):
    assert main(["train", "--import", "no_such_module_anywhere", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--import no_such_module_anywhere" in err and len(err.splitlines()) == 1


FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = ROOT / "examples" / "samples"  # the committed sample inputs


def _samples(name: str):
    return np.load(SAMPLES / f"{name}_x.npy"), json.loads((SAMPLES / f"{name}_y.json").read_text())


def test_a_state_saved_before_the_house_move_restores_and_predicts_the_same():
    """tests/fixtures/: the shipped model adapted to the samples (and updated with new_x) by the runtime as it was
    at commit eb17c83, before the move; saved state and its query probabilities. Both hold after it (<= 1e-6), in
    the MAML-trained model shipped until the Reptile one replaced it (tests/fixtures/omniglot-conv4-maml, the
    same network exported again in format 4 with ``--replaces``)."""
    learner = rt.load(FIXTURES / "omniglot-conv4-maml")
    restored = learner.restore(FIXTURES / "shipped-state-before-house.npz")
    before = np.load(FIXTURES / "shipped-probabilities-before-house.npy")
    query_x, _ = _samples("query")
    np.testing.assert_allclose(restored.predict_proba(query_x), before, rtol=0, atol=1e-6)
    redone = learner.adapt(*_samples("support")).update(*_samples("new"))
    np.testing.assert_allclose(redone.predict_proba(query_x), before, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_shipped_checkpoint_exported_now_predicts_as_the_shipped_artifact(tmp_path):
    """The shipped checkpoint, exported by today's code with the shipped artifact's settings, adapts and predicts
    as the shipped artifact does (<= 1e-6 on the samples' probabilities)."""
    from edgeadapt.export import export_artifact

    shipped = rt.load(ROOT / "models" / "omniglot-conv4")
    manifest = shipped.manifest
    settings = {k: manifest[k] for k in ("scope", "head_init", "head_scale", "inner_steps", "inner_lr")}
    fresh = rt.load(export_artifact(ROOT / "models" / "omniglot-conv4" / "checkpoint", tmp_path / "a",
                                    max_ways=manifest["max_ways"], max_shots=manifest["max_shots"], executorch=False,
                                    **settings))
    assert InputSpec.from_manifest(fresh.manifest) == InputSpec.from_manifest(manifest)
    query_x, _ = _samples("query")
    fresh_p, shipped_p = (learner.adapt(*_samples("support")).predict_proba(query_x) for learner in (fresh, shipped))
    np.testing.assert_allclose(fresh_p, shipped_p, rtol=0, atol=1e-6)


def test_a_registered_backend_runs_artifacts_by_name():
    from edgeadapt.runtime.backends import BACKENDS, OnnxRuntimeBackend, register_backend

    made = []

    def counting(artifact, threads):
        made.append(artifact.folder)
        return OnnxRuntimeBackend(artifact, threads)

    register_backend("counting-onnxruntime", counting)
    try:
        learner = rt.load(ROOT / "models" / "omniglot-conv4", backend="counting-onnxruntime")
        reference = rt.load(ROOT / "models" / "omniglot-conv4")
        query_x, _ = _samples("query")
        ours, theirs = (x.adapt(*_samples("support")).predict_proba(query_x) for x in (learner, reference))
        np.testing.assert_array_equal(ours, theirs)
        assert made == [ROOT / "models" / "omniglot-conv4"]
        with pytest.raises(rt.InputError, match="already registered"):
            register_backend("onnxruntime", counting)
        with pytest.raises(rt.InputError, match="unknown backend 'nope'.*register_backend"):
            rt.load(ROOT / "models" / "omniglot-conv4", backend="nope")
    finally:
        BACKENDS.pop("counting-onnxruntime")
