import json

import pytest
import torch

from edgeadapt.sdk import CheckpointError, Conv4, EpisodeSampler, load_checkpoint, save_checkpoint, train_maml
from edgeadapt.sdk.checkpoint import load_training_state

from helpers import labelled_dataset


def _model(seed=0):
    torch.manual_seed(seed)
    return Conv4(ways=3, hidden=4)


def test_round_trip_restores_weights_and_config(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "ckpt", model, {"training": {"inner_lr": 0.1}, "seed": 3})
    loaded, config = load_checkpoint(tmp_path / "ckpt")
    assert type(loaded) is Conv4 and loaded.config == model.config
    assert config["training"] == {"inner_lr": 0.1} and config["seed"] == 3
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json"}


@pytest.mark.parametrize("damage", ["flip_weight_byte", "edit_config", "delete_file", "bad_manifest", "version"])
def test_tampered_or_broken_checkpoints_are_refused(tmp_path, damage):
    path = save_checkpoint(tmp_path / "ckpt", _model())
    if damage == "flip_weight_byte":
        data = bytearray((path / "model.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (path / "model.safetensors").write_bytes(bytes(data))
        match = "sha256"
    elif damage == "edit_config":
        (path / "config.json").write_text((path / "config.json").read_text().replace('"ways": 3', '"ways": 4'))
        match = "sha256"
    elif damage == "delete_file":
        (path / "config.json").unlink()
        match = "missing"
    elif damage == "bad_manifest":
        (path / "manifest.json").write_text("{not json")
        match = "not valid JSON"
    else:
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["format_version"] = 99
        (path / "manifest.json").write_text(json.dumps(manifest))
        match = "format_version"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt", _model(0))
    before = (path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("edgeadapt.runtime.format.files.replace_folder", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, _model(1))
    monkeypatch.undo()
    assert (path / "model.safetensors").read_bytes() == before
    load_checkpoint(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging folder left behind


def test_loading_never_unpickles(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", _model())
    assert all(not f.name.endswith((".pt", ".pth", ".pkl")) for f in path.iterdir())
    with pytest.raises(CheckpointError):  # a pickle in place of the weights is rejected, not loaded
        (path / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
        load_checkpoint(path)


class _CrashingSampler(EpisodeSampler):
    """Raises on its ``crash_at``-th meta-batch, like a run killed mid-training."""

    def __init__(self, crash_at: int):
        super().__init__(labelled_dataset(), ways=3, shots=1, query_shots=2, seed=7)
        self.calls, self.crash_at = 0, crash_at

    def tasks(self, iteration, indices):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt
        return super().tasks(iteration, indices)


def _without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in history]


@pytest.mark.parametrize(("algorithm", "inner_batch"),
                         [("reptile", None), ("fomaml", None), ("maml", None), ("reptile", 2)])
def test_interrupted_run_resumes_bit_identically(tmp_path, algorithm, inner_batch):
    lr = 0.5 if algorithm == "reptile" else 0.01
    settings = dict(inner_lr=0.1, outer_lr=lr, inner_steps=2, algorithm=algorithm, meta_batch_size=2,
                    num_iterations=4, inner_batch=inner_batch, progress=False)
    straight, history = train_maml(_model(), _CrashingSampler(0), **settings)

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # checkpoint at iteration 2, killed while sampling iteration 3
        train_maml(_model(), _CrashingSampler(3), checkpoint_dir=run, checkpoint_every=2,
                   metrics_path=tmp_path / "m.jsonl", **settings)
    assert load_training_state(run)[1]["iteration"] == 2
    resumed, _ = load_checkpoint(run)
    resumed, resumed_history = train_maml(resumed, _CrashingSampler(0), checkpoint_dir=run, resume=True,
                                          metrics_path=tmp_path / "m.jsonl", **settings)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    # Everything but wall-clock time is identical; training time keeps adding up across the resumption.
    assert _without_time(resumed_history) == _without_time(history)
    elapsed = [r["elapsed"] for r in resumed_history]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    assert [json.loads(line)["iteration"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_reptile_without_queries_checkpoints(tmp_path):
    sampler = EpisodeSampler(labelled_dataset(), ways=3, shots=1, query_shots=0, seed=1)
    _, history = train_maml(_model(), sampler, 0.1, 1.0, 1, "reptile", 2, 2, checkpoint_dir=tmp_path / "c",
                            progress=False)
    assert [sorted(r) for r in history] == [["elapsed", "iteration", "outer_lr"]] * 2
    assert load_training_state(tmp_path / "c")[1]["iteration"] == 2
