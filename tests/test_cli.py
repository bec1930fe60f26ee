import json

import pytest

from edgeadapt.sdk.cli import build_parser, main


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
    assert "meta trained after adaptation" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["validation"]) == {"untrained_adapted", "meta_trained_before_adaptation",
                                          "meta_trained_after_adaptation"}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert main(["eval", str(out / "checkpoint"), "--dataset", "glyphs", "--tasks", "10",
                 "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["tasks"] == 10 and 0.0 <= result["mean"] <= 1.0 and result["inner_steps"] == 5


def test_variable_task_sizes_train_and_export(tmp_path):
    import numpy as np

    import edgeadapt.runtime as rt

    out = tmp_path / "run"
    assert main(["train", "--dataset", "glyphs", "--ways", "4", "--min-ways", "2", "--shots", "2", "--min-shots", "1",
                 "--hidden", "4", "--inner-steps", "1", "--iterations", "2", "--eval-tasks", "0", "--out", str(out),
                 "--no-progress"]) == 0
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["data"]["min_ways"] == 2 and config["data"]["min_shots"] == 1
    assert main(["export", str(out / "checkpoint"), "-o", str(tmp_path / "artifact"), "--max-shots", "2"]) == 0
    learner = rt.load(tmp_path / "artifact")
    adapted = learner.adapt(np.zeros((3, 1, 28, 28), np.float32), ["a", "b", "c"])
    assert adapted.predict_proba(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 3)


def test_resume_continues_a_run(tmp_path):
    out = tmp_path / "run"
    base = ["train", "--dataset", "glyphs", "--hidden", "8", "--eval-tasks", "0", "--out", str(out), "--no-progress"]
    assert main(base + ["--iterations", "2"]) == 0
    assert main(base + ["--iterations", "4", "--resume"]) == 0
    assert [json.loads(x)["iteration"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert main(base + ["--iterations", "6", "--resume", "--algorithm", "maml"]) == 2  # not how it was trained


def test_sine_regression_trains_with_every_algorithm(tmp_path, capsys):
    for algorithm in ("reptile", "fomaml", "maml"):
        assert main(["train", "--dataset", "sine", "--algorithm", algorithm, "--shots", "10", "--iterations", "5",
                     "--eval-tasks", "5", "--out", str(tmp_path / algorithm), "--no-progress"]) == 0
    assert "mse" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["eval", "/nonexistent/ckpt", "--dataset", "glyphs"], "no checkpoint folder at /nonexistent/ckpt"),
    (["train", "--dataset", "omniglot", "--data", "/nonexistent/omniglot.zip", "--out", "x"], "/nonexistent"),
    (["train", "--dataset", "glyphs", "--shots", "19", "--query-shots", "5", "--out", "x"], "drawings"),
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
