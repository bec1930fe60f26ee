"""A user's own data: folders of pictures and WAV clips, arrays, ragged classes, splits, augmentations per
modality, and one clear line for each kind of bad folder."""

import numpy as np
import pytest
import soundfile
import torch

from edgeadapt.cli import main
from edgeadapt.runtime.audio import clip_features
from edgeadapt.sdk.augment import augment, default_augmentation
from edgeadapt.sdk.datasets import folders
from edgeadapt.sdk.datasets.arrays import from_arrays, load_arrays
from edgeadapt.sdk.datasets.base import ClassDataset
from edgeadapt.sdk.datasets.source import DataSource, audio_spec, load_source
from edgeadapt.sdk.datasets.splits import SplitRule, split_classes
from edgeadapt.sdk.errors import DatasetError
from edgeadapt.sdk.tasks import EpisodeSampler
from helpers import labelled_dataset, photo_folder, picture, wav_folder

RNG = np.random.default_rng(1)

def test_an_image_folder_is_ragged_uint8_and_shaped_by_its_input_description(tmp_path):
    root = photo_folder(tmp_path / "photos")
    source = DataSource(root, image_size=16, cache_dir=tmp_path / "cache")
    data = load_source(source)
    assert data.examples.dtype == torch.uint8 and data.examples.shape == (17, 3, 16, 16)
    assert data.class_sizes == (3, 5, 2, 7) and data.class_names == ("kind0", "kind1", "kind2", "kind3")
    assert data.input_spec == source.picture_spec() and data.input_spec.fit == "crop"
    assert torch.equal(data.labels, torch.tensor([0] * 3 + [1] * 5 + [2] * 2 + [3] * 7))
    decoded = data.decode(data.examples)
    assert decoded.dtype == torch.float32 and 0 <= float(decoded.min()) and float(decoded.max()) <= 1
    expected = folders.read_picture(root / "kind1" / "0.jpg", data.input_spec)  # a file, read as training reads it
    assert np.array_equal(data.class_examples(1)[0].numpy(), expected)
    gray = load_source(DataSource(root, image_size=12, channels=1, fit="stretch", cache_dir=tmp_path / "cache"))
    assert gray.examples.shape == (17, 1, 12, 12)
    imagenet = load_source(DataSource(root, image_size=16, value_range=(-1.0, 127 / 128), cache_dir=tmp_path / "c"))
    assert imagenet.input_spec.value_range == (-1.0, 127 / 128)  # what the manifest tells the device, too
    torch.testing.assert_close(imagenet.decode(data.examples), -1.0 + decoded * (127 / 128 + 1.0))
    for bad in ((1.0, 0.0), (0.0, float("nan"))):
        with pytest.raises(DatasetError, match="value range"):
            DataSource(root, value_range=bad)


def test_a_folder_is_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    root = photo_folder(tmp_path / "photos")
    source = DataSource(root, image_size=16, cache_dir=tmp_path / "cache")
    first = load_source(source)
    monkeypatch.setattr(folders, "read_picture", lambda *a: pytest.fail("decoded again despite the cache"))
    assert torch.equal(load_source(source).examples, first.examples)
    picture(root / "kind0" / "new.png", (30, 30))  # a new file changes the fingerprint: decoded again
    with pytest.raises(pytest.fail.Exception):
        load_source(source)


def test_a_group_level_is_found_and_splits_keep_groups_together(tmp_path):
    data = load_source(DataSource(photo_folder(tmp_path / "p", grouped=True), image_size=8,
                                  cache_dir=tmp_path / "c"))
    assert data.groups == ("session0", "session0", "session1", "session1")
    train, validation = split_classes(data, SplitRule(0.5, seed=0, by="group"))
    assert len(set(train.groups)) == 1 and set(train.groups).isdisjoint(validation.groups)


def test_splits_are_class_disjoint_stable_and_can_come_from_a_file(tmp_path):
    data = labelled_dataset(n_classes=30)
    train, validation = split_classes(data, SplitRule(0.2, seed=3))
    assert validation.n_classes == 6 and set(train.class_names).isdisjoint(validation.class_names)
    fewer = data.take([c for c in range(30) if data.class_names[c] not in train.class_names[:4]])
    fewer_validation = split_classes(fewer, SplitRule(0.2, seed=3))[1].class_names
    assert len(fewer_validation) == 5 and set(fewer_validation) < set(validation.class_names)  # no class moved over
    assert split_classes(data, SplitRule(0.2, seed=4))[1].class_names != validation.class_names
    listed = tmp_path / "val.txt"
    listed.write_text(f"{data.class_names[0]}\n{data.class_names[5]}\n")
    assert split_classes(data, SplitRule(file=listed))[1].class_names == (data.class_names[0], data.class_names[5])
    listed.write_text("no-such-class\n")
    with pytest.raises(DatasetError, match="no-such-class"):
        split_classes(data, SplitRule(file=listed))


def test_a_wav_folder_becomes_the_runtimes_own_features(tmp_path):
    root = wav_folder(tmp_path / "words")
    data = load_source(DataSource(root, cache_dir=tmp_path / "cache"))
    spec = audio_spec(8000)
    assert data.input_spec == spec and data.examples.shape == (9, *spec.shape)
    samples, rate = soundfile.read(root / "word1" / "2.wav", dtype="float32")
    assert np.array_equal(data.class_examples(1)[2].numpy(), clip_features(samples, rate, spec.audio))


def test_arrays_with_labels_become_classes(tmp_path):
    x = RNG.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    y = np.array(["b", "a"] * 5)
    data = from_arrays(x, y, groups=np.array(["g1", "g2"] * 5))
    assert data.class_names == ("a", "b") and data.groups == ("g2", "g1") and data.examples.shape == (10, 3, 6, 6)
    assert np.array_equal(data.class_examples(0).numpy(), x[1::2].transpose(0, 3, 1, 2))
    np.savez(tmp_path / "d.npz", x=RNG.random((6, 4), dtype=np.float32), y=np.array([0, 1, 2] * 2))
    vectors = load_arrays(tmp_path / "d.npz")
    assert vectors.input_spec.modality == "vector" and vectors.class_sizes == (2, 2, 2)


def test_ragged_classes_give_tasks_of_their_own_examples_only():
    sizes = (3, 9, 4, 20, 6)
    examples = torch.cat([torch.full((n, 1, 2, 2), float(c)) + torch.arange(n).view(n, 1, 1, 1) / 100
                          for c, n in enumerate(sizes)])
    data = ClassDataset(examples, sizes, tuple("abcde"), ("",) * 5)
    sampler = EpisodeSampler(data, ways=3, shots=2, query_shots=2, seed=0)  # class 0 (3 examples) is left out
    batch = sampler.sample(200)
    values = torch.cat([batch.support_x, batch.query_x], 1)[..., 0, 0, 0]
    classes, drawings = values.floor().long(), ((values - values.floor()) * 100).round().long()
    assert not (classes == 0).any() and (drawings < torch.tensor(sizes)[classes]).all()
    per_task = torch.cat([batch.support_x, batch.query_x], 1).flatten(1)
    assert all(len(set(task.tolist())) == per_task.shape[1] // 4 for task in per_task[:20])  # no example twice


def test_equal_size_datasets_draw_the_tasks_they_always_drew():
    data = labelled_dataset(n_classes=12, n_drawings=20)
    batch = EpisodeSampler(data, ways=5, shots=1, query_shots=5, seed=7).sample(3)
    g = torch.Generator().manual_seed(7)  # the sampler's draws before ragged classes, written out
    classes = torch.rand(3, 12, generator=g).topk(5, dim=1).indices
    drawings = torch.rand(3, 5, 20, generator=g).argsort(dim=2)[..., :6]
    expected = data.images[classes[:, :, None], drawings]
    assert torch.equal(batch.support_x, expected[:, :, :1].reshape(3, 5, 1, 28, 28))


def test_augmentations_suit_the_modality():
    g = torch.Generator().manual_seed(0)
    photos = torch.rand(4, 3, 16, 16, generator=g) * 0.5 + 0.5
    assert default_augmentation(load_spec("image")) == "photo"
    assert default_augmentation(load_spec("strokes")) == "shift"
    assert float(augment(photos, "photo", g).min()) >= 0.45  # a photo's border is picture, never black paper
    spectrogram = torch.zeros(2, 1, 8, 16)
    spectrogram[:, :, 3] = 1.0  # one frequency band, all the time
    moved = augment(spectrogram, "time_shift", g)
    assert torch.allclose(moved[:, :, 3, 4:12], torch.ones(2, 1, 8)) and float(moved[:, :, [0, 7]].abs().max()) < 1e-6


def load_spec(modality):
    from edgeadapt.runtime.format.inputs import InputSpec

    return InputSpec((1, 8, 8), modality=modality)


def _bad_folders(tmp_path):
    unreadable = photo_folder(tmp_path / "unreadable")
    (unreadable / "kind1" / "broken.jpg").write_bytes(b"not a jpeg")
    empty = photo_folder(tmp_path / "empty")
    (empty / "kind9").mkdir()
    single = photo_folder(tmp_path / "single")
    picture(single / "kind9.png", (9, 9))
    (single / "kind9").mkdir()
    picture(single / "kind9" / "only.png", (9, 9))
    one_class = tmp_path / "one_class"
    photo_folder(one_class, sizes=(4,))
    mixed = wav_folder(tmp_path / "mixed", classes=2)
    soundfile.write(mixed / "word0" / "fast.wav", np.zeros(1600), 16000)
    return [(unreadable, "broken.jpg is not a readable image"), (empty, "class 'kind9'"),
            (single, "only one"), (one_class, "at least 2 classes"), (mixed, "mixed sample rates"),
            (tmp_path / "nowhere", "no data at")]


def test_each_bad_folder_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEADAPT_CACHE", str(tmp_path / "cache"))
    for folder, message in _bad_folders(tmp_path):
        assert main(["pretrain", "--data", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1",
                     "--image-size", "8", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (folder, err)


def test_starting_weights_come_from_a_state_dict_or_a_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    from edgeadapt.sdk.checkpoint import CheckpointError, start_from
    from edgeadapt.sdk.models import Conv4

    torch.manual_seed(0)
    trained, fresh = Conv4(ways=10, hidden=4), Conv4(ways=5, hidden=4)
    save_file(trained.state_dict(), tmp_path / "w.safetensors")
    assert start_from(fresh, tmp_path / "w.safetensors") == ["head.bias", "head.weight"]  # 10 classes there, 5 here
    assert all(torch.equal(a, b) for a, b in zip(fresh.features.parameters(), trained.features.parameters()))
    assert start_from(Conv4(ways=10, hidden=4), trained.state_dict()) == []
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="safetensors files only"):
        start_from(fresh, tmp_path / "w.pt")  # a pickle is never loaded
    with pytest.raises(CheckpointError, match="does not fit"):
        start_from(Conv4(ways=5, hidden=8), tmp_path / "w.safetensors")
