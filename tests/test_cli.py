import json
import math

import numpy as np
import pytest
import torch

from edgeadapt.sdk import evaluate, load_checkpoint
from edgeadapt.sdk.checkpoint import load_lr_scales
from edgeadapt.cli import build_parser, main
from edgeadapt.sdk.inner_loop import inner_loop_from_config
from edgeadapt.sdk.preconditioner import adam_lr_scales, preconditioned_parameters
from edgeadapt.sdk.recipes import make_sampler
from helpers import photo_folder


def _evaluate_checkpoint(path, split, seed, tasks, inner_steps=None):
    """Evaluate a saved glyph checkpoint directly with the SDK, as the CLI should (5-way 1-shot, 5 queries)."""
    model, config = load_checkpoint(path)
    training = config["training"]
    sampler, _ = make_sampler("glyphs", None, split, 5, 1, 5, seed, training=False)
    steps = training["inner_steps"] if inner_steps is None else inner_steps
    return evaluate(model, sampler, training["inner_lr"], steps, tasks, scope=training["scope"],
                    head_init=training["head_init"], head_scale=training["head_scale"])


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["export"]])
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "usage: edgeadapt" in printed
    assert "%%" not in printed, "a description escaped % as if it were a help string"


def test_train_then_eval_on_glyphs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "glyphs", "--iterations", "3", "--hidden", "8", "--eval-tasks", "10",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    validation = summary["validation"]
    assert set(validation) == {"untrained_adapted", "meta_trained_before_adaptation", "meta_trained_after_adaptation"}
    # the summary's scores are the saved checkpoint's, on held-out classes (seed + 1), recomputed here
    after = _evaluate_checkpoint(out / "checkpoint", "validation", seed=1, tasks=10)
    before = _evaluate_checkpoint(out / "checkpoint", "validation", seed=1, tasks=10, inner_steps=0)
    assert validation["meta_trained_after_adaptation"]["mean"] == pytest.approx(after.mean, abs=1e-6)
    assert validation["meta_trained_before_adaptation"]["mean"] == pytest.approx(before.mean, abs=1e-6)
    assert f"{'meta trained after adaptation':32s} {after}" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in records)

    assert main(["eval", str(out / "checkpoint"), "--dataset", "glyphs", "--tasks", "10",
                 "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    expected = _evaluate_checkpoint(out / "checkpoint", "validation", seed=0, tasks=10)
    assert result["tasks"] == 10 and result["inner_steps"] == 5 and result["metric"] == "accuracy"
    assert result["mean"] == pytest.approx(expected.mean, abs=1e-6)
    assert result["ci95"] == pytest.approx(expected.ci95, abs=1e-6)


def test_variable_task_sizes_train_and_export(tmp_path):
    import edgeadapt.runtime as rt

    out = tmp_path / "run"
    assert main(["train", "--dataset", "glyphs", "--ways", "4", "--min-ways", "2", "--shots", "2", "--min-shots", "1",
                 "--hidden", "4", "--inner-steps", "1", "--iterations", "2", "--eval-tasks", "0", "--out", str(out),
                 "--no-progress"]) == 0
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["data"]["min_ways"] == 2 and config["data"]["min_shots"] == 1
    assert main(["export", str(out / "checkpoint"), "-o", str(tmp_path / "artifact"), "--max-shots", "2"]) == 0
    learner = rt.load(tmp_path / "artifact")
    g = np.random.default_rng(0)
    support, queries = g.random((3, 1, 28, 28), dtype=np.float32), g.random((2, 1, 28, 28), dtype=np.float32)
    probabilities = learner.adapt(support, ["a", "b", "c"]).predict_proba(queries)  # 3 of the model's 4 classes
    model, config = load_checkpoint(out / "checkpoint")
    inner = inner_loop_from_config(model, config["training"])
    expected = inner.probabilities(torch.from_numpy(support), torch.arange(3), torch.from_numpy(queries),
                                   class_mask=torch.tensor([1.0, 1.0, 1.0, 0.0]))[:, :3].numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)


def test_resume_continues_a_run(tmp_path):
    out = tmp_path / "run"
    base = ["train", "--dataset", "glyphs", "--hidden", "8", "--eval-tasks", "0", "--out", str(out), "--no-progress"]
    assert main(base + ["--iterations", "2"]) == 0
    assert main(base + ["--iterations", "4", "--resume"]) == 0
    assert [json.loads(x)["iteration"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert main(base + ["--iterations", "6", "--resume", "--algorithm", "maml"]) == 2  # not how it was trained


def test_sine_regression_trains_with_every_algorithm(tmp_path):
    weights = {}
    for algorithm in ("reptile", "fomaml", "maml"):
        out = tmp_path / algorithm
        assert main(["train", "--dataset", "sine", "--algorithm", algorithm, "--shots", "10", "--iterations", "5",
                     "--eval-tasks", "5", "--out", str(out), "--no-progress"]) == 0
        model, config = load_checkpoint(out / "checkpoint")
        assert config["training"]["algorithm"] == algorithm and config["training"]["loss"] == "mse"
        scores = json.loads((out / "summary.json").read_text())["validation"].values()
        assert all(s["metric"] == "mse" and s["tasks"] == 5 and 0 < s["mean"] < math.inf for s in scores)
        assert len((out / "metrics.jsonl").read_text().splitlines()) == 5
        weights[algorithm] = torch.cat([p.flatten() for p in model.parameters()])
    # the same seed and data, different meta-gradients: three different models
    assert not torch.equal(weights["reptile"], weights["fomaml"]) and not torch.equal(weights["fomaml"], weights["maml"])


@pytest.mark.parametrize("argv, message", [
    (["eval", "/nonexistent/ckpt", "--dataset", "glyphs"], "no checkpoint folder at /nonexistent/ckpt"),
    (["train", "--dataset", "omniglot", "--data", "/nonexistent/omniglot.zip", "--out", "x"], "/nonexistent"),
    (["train", "--dataset", "glyphs", "--shots", "19", "--query-shots", "5", "--out", "x"], "classes that large"),
])
def test_bad_input_gives_a_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "--out", "x", "--ways", "0"], ["train", "--out", "x", "--inner-lr", "-1"],
                                  ["train", "--out", "x", "--algorithm", "sgd"], ["train"]])
def test_bad_arguments_are_rejected_by_the_parser(argv):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2


def test_pretrain_then_meta_train_with_adam_rates_and_minibatches(tmp_path):
    """``train --init --inner-rates adam --inner-batch``: the run keeps Adam's frozen rates, and eval uses them."""
    pretrained = tmp_path / "pretrain"
    assert main(["pretrain", "--dataset", "glyphs", "--epochs", "1", "--batch-size", "32", "--hidden", "8",
                 "--eval-tasks", "0", "--out", str(pretrained), "--no-progress"]) == 0
    out = tmp_path / "run"
    assert main(["train", "--dataset", "glyphs", "--init", str(pretrained / "checkpoint"), "--iterations", "2",
                 "--scope", "last_block", "--head-init", "prototypes", "--shots", "2", "--inner-batch", "3",
                 "--inner-rates", "adam", "--eval-tasks", "0", "--out", str(out), "--no-progress"]) == 0
    model, config = load_checkpoint(out / "checkpoint")
    assert config["training"]["inner_batch"] == 3
    expected = adam_lr_scales(pretrained / "checkpoint", preconditioned_parameters(model, "last_block"))
    saved = load_lr_scales(out / "checkpoint")
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in expected)

    assert main(["eval", str(out / "checkpoint"), "--dataset", "glyphs", "--tasks", "10",
                 "--json", str(tmp_path / "e.json")]) == 0
    sampler, _ = make_sampler("glyphs", None, "validation", 5, 1, 5, 0, training=False)
    training = config["training"]
    rated = evaluate(model, sampler, training["inner_lr"], training["inner_steps"], 10, scope="last_block",
                     head_init="prototypes", lr_scales=saved)
    assert json.loads((tmp_path / "e.json").read_text())["mean"] == pytest.approx(rated.mean, abs=1e-6)


def test_within_alphabet_training_is_recorded(tmp_path):
    folder = photo_folder(tmp_path / "photos", sizes=(4,) * 8, grouped=True)
    common = ["train", "--dataset", "folder", "--data", str(folder), "--image-size", "8", "--ways", "2", "--shots",
              "1", "--query-shots", "1", "--hidden", "4", "--iterations", "2", "--eval-tasks", "0", "--no-progress",
              "--within-alphabet"]
    assert main([*common, "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    assert config["data"]["within_alphabet"] is True
