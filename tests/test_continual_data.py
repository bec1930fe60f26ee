"""MNIST IDX loading and its errors, the rotated-MNIST stream, and ``edgeadapt continual`` end to end,
all on small generated IDX files (never the real data)."""

import gzip
import json

import numpy as np
import pytest
import torch

from edgeadapt.cli import main
from edgeadapt.sdk.datasets import DatasetError
from edgeadapt.sdk.datasets.mnist import MNIST_FILES, load_mnist, write_idx
from edgeadapt.sdk.continual import rotated_mnist


def write_tiny_mnist(folder, n_train=40, n_test=20, seed=0):
    """Four IDX .gz files; image i's top-left pixel is i (so an image names its index) and a class-dependent bar."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 2 * label:6 + 2 * label, 3:20] = 255  # a bar whose height tells the class
        images[:, 0, 0] = np.arange(n)
        image_name, label_name = MNIST_FILES[split]
        write_idx(folder / image_name, images)
        write_idx(folder / label_name, labels.astype(np.uint8))
    return folder


def test_loads_the_generated_files(tmp_path):
    folder = write_tiny_mnist(tmp_path / "mnist")
    train = load_mnist(tmp_path)  # a data folder holding mnist/ works, and so does the folder itself
    test = load_mnist(folder, "test")
    assert train.images.shape == (40, 28, 28) and train.labels.tolist() == [i % 10 for i in range(40)]
    assert test.images.shape == (20, 28, 28) and test.images[7, 0, 0] == 7


def _corrupt(folder, name, data: bytes, compress=True):
    (folder / name).write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "train-images-idx3-ubyte.gz").unlink(), "is missing"),
    (lambda f: _corrupt(f, "train-images-idx3-ubyte.gz", b"plain bytes", compress=False), "not a complete gzip"),
    (lambda f: (f / "train-labels-idx1-ubyte.gz").write_bytes((f / "train-labels-idx1-ubyte.gz").read_bytes()[:-9]),
     "not a complete gzip"),
    (lambda f: _corrupt(f, "train-images-idx3-ubyte.gz", b"\x00\x00"), "too short"),
    (lambda f: _corrupt(f, "train-images-idx3-ubyte.gz", b"\x00\x00\x0d\x03" + bytes(12)), "not an unsigned-byte IDX"),
    (lambda f: _corrupt(f, "train-labels-idx1-ubyte.gz", b"\x00\x00\x08\x01\x00\x00\x00\x28" + bytes(39)),
     "truncated or corrupt"),
    (lambda f: write_idx(f / "train-labels-idx1-ubyte.gz", np.zeros(39, np.uint8)), "40 images but"),
    (lambda f: write_idx(f / "train-labels-idx1-ubyte.gz", np.full(40, 12, np.uint8)), "digits 0..9"),
])
def test_missing_corrupt_and_truncated_files_are_named(tmp_path, damage, message):
    folder = write_tiny_mnist(tmp_path / "mnist")
    damage(folder)
    with pytest.raises(DatasetError, match=message) as error:
        load_mnist(folder)
    assert "ubyte.gz" in str(error.value)


def test_rotated_stream_rotates_and_keeps_the_validation_slice_out_of_training(tmp_path):
    write_tiny_mnist(tmp_path / "mnist", n_train=60)
    tasks = rotated_mnist(tmp_path, train_size=30, validation_size=10, seed=1)
    assert [t.name for t in tasks] == ["rot0", "rot90", "rot180", "rot270"]
    for k, task in enumerate(tasks):
        torch.testing.assert_close(task.eval_x, torch.rot90(tasks[0].eval_x, k, dims=(-2, -1)), rtol=0, atol=0)
        index = (torch.rot90(task.train_x, -k, dims=(-2, -1))[:, 0, 0, 0] * 255).round().long()
        assert len(index) == 30 and index.max() < 50  # images 50..59 are the validation slice
        assert task.train_y.tolist() == (index % 10).tolist()
    validation = rotated_mnist(tmp_path, validation_size=10, evaluate_on="validation", flatten=True)
    assert validation[0].eval_x.shape == (10, 784)
    assert ((validation[0].eval_x[:, 0] * 255).round().long() == torch.arange(50, 60)).all()
    assert rotated_mnist(tmp_path, rotations=(0, 45), validation_size=10)[1].name == "rot45"


def test_cli_trains_resumes_and_reports_on_tiny_idx_files(tmp_path, capsys):
    write_tiny_mnist(tmp_path / "data" / "mnist", n_train=60)
    out = tmp_path / "run"
    args = ["continual", "--dataset", "rotated-mnist", "--data", str(tmp_path / "data"), "--method", "reptile-ewc",
            "--hidden", "16", "--train-size", "40", "--validation-size", "10", "--steps-per-task", "6",
            "--inner-steps", "2", "--batch-size", "8", "--fisher-samples", "10", "--checkpoint-every", "4",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert "final average accuracy" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["rot0", "rot90", "rot180", "rot270"]
    assert len(summary["matrix"]) == 4 and all(len(row) == 4 for row in summary["matrix"])
    assert summary["average"] == pytest.approx(sum(summary["matrix"][-1]) / 4)
    assert len(summary["few_shot"]["accuracy"]) == 4 and summary["method"] == "reptile-ewc"
    assert (summary["config"]["outer"], summary["config"]["regulariser"]) == ("reptile", "ewc")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in records) == 4 * 3 and sum("accuracies" in r for r in records) == 4
    assert (out / "checkpoint" / "manifest.json").exists()
    assert main(args + ["--resume"]) == 0  # a finished run resumes to the same result
    assert json.loads((out / "summary.json").read_text())["matrix"] == summary["matrix"]
    assert main(args[:-3] + ["--method", "sgd", "--out", str(out), "--resume"]) == 2
    assert main(args + ["--train-size", "30", "--resume"]) == 2  # not the stream it was trained on
    assert "was trained on" in capsys.readouterr().err


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    assert main(["continual", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "error:" in error and "train-images-idx3-ubyte.gz is missing" in error


def test_cli_search_tunes_on_the_validation_slice(tmp_path):
    pytest.importorskip("optuna")
    write_tiny_mnist(tmp_path / "mnist", n_train=60)
    out = tmp_path / "run"
    assert main(["continual", "--data", str(tmp_path), "--method", "reptile", "--hidden", "8", "--train-size", "30",
                 "--validation-size", "10", "--rotations", "0", "90", "--steps-per-task", "4", "--batch-size", "8",
                 "--search", "2", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["search"]["trials"]) == 2
    assert set(summary["search"]["best"]) == {"inner_lr", "meta_lr", "inner_steps"}  # no EWC, no lambda
    assert summary["config"]["controller"]["inner_lr"] == summary["search"]["best"]["inner_lr"]


def test_continual_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["continual", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "usage: edgeadapt continual" in printed and "--method" in printed and "%%" not in printed


def test_any_rotation_angle_and_permuted_streams(tmp_path):
    from edgeadapt.sdk.continual.streams import lopez_paz_rotations, permuted_mnist

    folder = write_tiny_mnist(tmp_path / "mnist")
    near, exact = rotated_mnist(folder.parent, rotations=(89.999, 90), validation_size=5)
    assert torch.allclose(near.eval_x, exact.eval_x, atol=1e-3) and near.name == "rot89.999"
    assert torch.equal(exact.eval_x, torch.rot90(rotated_mnist(folder.parent, rotations=(0,), validation_size=5)[0]
                                                 .eval_x, 1, (-2, -1)))
    angles = lopez_paz_rotations(20, seed=3)
    assert len(set(angles)) == 20 and all(0 <= a < 180 for a in angles) and angles == lopez_paz_rotations(20, seed=3)
    tasks = permuted_mnist(folder.parent, tasks=3, validation_size=5)
    plain = rotated_mnist(folder.parent, rotations=(0,), validation_size=5, flatten=True)[0]
    assert [t.train_x.shape for t in tasks] == [plain.train_x.shape] * 3
    for task in tasks:  # one pixel order per task, the same for its training and evaluation images
        order = [int(torch.nonzero(plain.eval_x[0] == v)[0]) if (plain.eval_x[0] == v).sum() == 1 else None
                 for v in task.eval_x[0]]
        assert sorted(task.eval_x[0].tolist()) == sorted(plain.eval_x[0].tolist()) and order != list(range(784))
    assert not torch.equal(tasks[0].eval_x, tasks[1].eval_x)
