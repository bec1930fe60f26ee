"""Every built-in backbone, and a user's own through --import, from a folder of photos to the device: pretrain ->
meta-train -> export -> ``load().adapt().predict()`` on camera-sized uint8 frames, whose probabilities match
PyTorch's adaptation of the same frames within ``TOLERANCE``."""

import textwrap

import numpy as np
import pytest
import torch

import edgeadapt.runtime as rt
from edgeadapt.cli import main
from edgeadapt.runtime.preprocess import prepare
from edgeadapt.sdk.backbones import BACKBONES
from edgeadapt.sdk.checkpoint import load_checkpoint, load_lr_scales
from edgeadapt.sdk.inner_loop import inner_loop_from_config
from edgeadapt.sdk.models import _REGISTRY
from helpers import photo_folder, wav_folder

# Probabilities of the runtime (onnxruntime) against PyTorch's InnerLoop after the same two first-order steps of
# the last block and head: float32 kernels that sum in another order, through ReLU6 / hardswish / leaky-ReLU kinks.
TOLERANCE = 1e-4
FRAME = (120, 160, 3)  # a camera frame, larger than and of another aspect than the model's square input

USER_MODULE = '''
    """A user's own backbone: a small strided CNN, registered as a model (so checkpoints rebuild it) and a backbone."""
    from torch import nn

    from edgeadapt.sdk.backbones import picture_size, register_backbone
    from edgeadapt.sdk.contract import Backbone
    from edgeadapt.sdk.models import register_model


    @register_model
    class PocketNet(Backbone):
        def __init__(self, ways=5, in_channels=3, width=8):
            self.config = {"ways": ways, "in_channels": in_channels, "width": width}
            blocks = [nn.Sequential(nn.Conv2d(c, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ELU())
                      for c in (in_channels, width)]
            super().__init__(nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(width, ways))


    register_backbone("pocket", lambda spec, s: PocketNet(s.ways, picture_size(spec, "pocket")[0], s.width or 8))
'''

CASES = {  # model: (image size, extra pretrain arguments)
    "conv4": (84, []),
    "resnet12": (32, []),
    "mobilenet_v1": (32, []),
    "mobilenet_v2": (32, ["--activation", "hardswish"]),
    "pocket": (32, ["--import", "pocket_backbone"]),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return photo_folder(tmp_path_factory.mktemp("photos") / "photos", sizes=(6, 7, 6, 8, 6, 9))


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(CASES))
def test_a_backbone_goes_from_a_photo_folder_to_the_device(model, photos, tmp_path, monkeypatch, request):
    (tmp_path / "pocket_backbone.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EDGEADAPT_CACHE", str(tmp_path / "cache"))
    request.addfinalizer(lambda: (BACKBONES.pop("pocket", None), _REGISTRY.pop("PocketNet", None)))
    size, extra = CASES[model]
    data = ["--data", str(photos), "--val-fraction", "0.5"]
    imports = [a for a in extra if a == "--import" or a.endswith("_backbone")]
    assert main(["pretrain", *data, "--model", model, "--hidden", "8", "--image-size", str(size), "--epochs", "1",
                 "--batch-size", "8", "--eval-tasks", "0", "--out", str(tmp_path / "pre"), "--no-progress",
                 *extra]) == 0
    assert main(["train", *imports, *data, "--init", str(tmp_path / "pre" / "checkpoint"), "--ways", "3",
                 "--shots", "2", "--query-shots", "1", "--iterations", "2", "--meta-batch", "2",
                 "--algorithm", "fomaml", "--scope", "last_block", "--head-init", "prototypes", "--head-scale", "0.5",
                 "--inner-steps", "2", "--inner-lr", "0.05", "--eval-tasks", "0", "--out", str(tmp_path / "meta"),
                 "--no-progress"]) == 0
    checkpoint = tmp_path / "meta" / "checkpoint"
    assert main(["export", *imports, str(checkpoint), "-o", str(tmp_path / "art"), "--max-shots", "2",
                 "--no-executorch"]) == 0
    _runtime_matches_pytorch(tmp_path / "art", checkpoint, size)


def _runtime_matches_pytorch(artifact, checkpoint, size):
    learner = rt.load(artifact)
    assert learner.input_shape == (3, size, size) and learner.manifest["scope"] == "last_block"
    generator = np.random.default_rng(0)
    frames = [generator.integers(0, 256, FRAME, dtype=np.uint8) // (1 + (i % 3)) for i in range(9)]
    support, queries = prepare(frames[:6], learner.manifest), prepare(frames[6:], learner.manifest)
    labels = [0, 0, 1, 1, 2, 2]
    on_device = learner.adapt(support, labels).predict_proba(queries)
    model, config = load_checkpoint(checkpoint)
    inner = inner_loop_from_config(model, config["training"], load_lr_scales(checkpoint), ways=learner.max_ways)
    class_mask = (torch.arange(learner.max_ways) < 3).float()
    expected = inner.probabilities(torch.from_numpy(support), torch.tensor(labels), torch.from_numpy(queries),
                                   class_mask)[:, :3].numpy()
    np.testing.assert_allclose(on_device, expected, atol=TOLERANCE)
    assert learner.self_test() <= TOLERANCE


@pytest.mark.slow
def test_a_folder_of_recordings_goes_to_the_device_and_adapts_to_raw_clips(tmp_path, monkeypatch):
    """WAV clips at 16 kHz -> log-mel Conv4 -> artifact; the device adapts to raw 44.1 kHz int16 clips, which
    ``prepare`` resamples and turns into the same features training used."""
    monkeypatch.setenv("EDGEADAPT_CACHE", str(tmp_path / "cache"))
    words = wav_folder(tmp_path / "words", rate=16000, classes=8, clips=4)
    data = ["--data", str(words), "--val-fraction", "0.5"]
    assert main(["pretrain", *data, "--hidden", "8", "--epochs", "1", "--batch-size", "8", "--eval-tasks", "0",
                 "--out", str(tmp_path / "pre"), "--no-progress"]) == 0
    assert main(["train", *data, "--init", str(tmp_path / "pre" / "checkpoint"), "--ways", "3", "--shots", "2",
                 "--query-shots", "1", "--iterations", "2", "--scope", "head", "--head-init", "prototypes",
                 "--head-scale", "0.5", "--inner-steps", "1", "--eval-tasks", "0", "--out", str(tmp_path / "meta"),
                 "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "meta" / "checkpoint"), "-o", str(tmp_path / "art"), "--max-shots", "2",
                 "--no-executorch"]) == 0
    learner = rt.load(tmp_path / "art")
    assert learner.manifest["input"]["audio"]["sample_rate"] == 16000
    t = np.arange(44100) / 44100
    clips = [(8000 * np.sin(2 * np.pi * f * t)).astype(np.int16) for f in (300, 310, 700, 690, 1500, 1480, 305)]
    support, queries = prepare(clips[:6], learner.manifest, sample_rate=44100), prepare(clips[6:], learner.manifest,
                                                                                        sample_rate=44100)
    adapted = learner.adapt(support, ["a-300Hz", "a-300Hz", "b-700Hz", "b-700Hz", "c-1500Hz", "c-1500Hz"])
    model, config = load_checkpoint(tmp_path / "meta" / "checkpoint")
    inner = inner_loop_from_config(model, config["training"], None, ways=learner.max_ways)
    expected = inner.probabilities(torch.from_numpy(support), torch.tensor([0, 0, 1, 1, 2, 2]),
                                   torch.from_numpy(queries), (torch.arange(learner.max_ways) < 3).float())
    np.testing.assert_allclose(adapted.predict_proba(queries), expected[:, :3].numpy(), atol=TOLERANCE)
