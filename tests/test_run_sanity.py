"""What a user meets when a run goes wrong or a model arrives in the wrong mode: models built for the inner loop,
a diverged run stopped before its NaN is saved, pretraining checkpoints evaluated as their readout, warnings at
chance, one-line errors for missing extras, quiet logs, and continual defaults that are the tuned recipe."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeadapt.runtime.errors import MissingExtraError
from edgeadapt.runtime.format.extras import require
from edgeadapt.sdk import Conv4, build_model, save_checkpoint
from edgeadapt.sdk.checkpoint import CheckpointError
from edgeadapt.cli import build_parser, main
from edgeadapt.cli.common import configure_logging
from edgeadapt.cli.continual import _config
from edgeadapt.sdk.continual.recipes import HYPERPARAMETERS, STREAMS
from edgeadapt.sdk.errors import DivergedError
from edgeadapt.sdk.evaluation import EvalResult
from edgeadapt.sdk.inner_loop import PRETRAINED_READOUT, adaptation_settings
from edgeadapt.sdk.run_loop import drive
from edgeadapt.sdk.sanity import at_chance, warn_if_chance, warn_if_never_learned

ROOT = Path(__file__).resolve().parent.parent


def test_built_models_are_in_eval_mode_so_a_batch_norm_checkpoint_meta_trains(tmp_path, capsys):
    """edgeadapt train --init of a batch-norm pretraining checkpoint (the README's recipe) trains and evaluates."""
    assert not build_model("Conv4", {"ways": 3, "hidden": 4, "norm": "batch"}).training
    torch.manual_seed(0)
    pretrained = Conv4(ways=12, hidden=8, norm="batch", activation="elu").eval()
    init = save_checkpoint(tmp_path / "pre", pretrained, {"pretraining": {"epochs": 1}, "data": {"dataset": "glyphs"}})
    for algorithm in ("fomaml", "maml", "reptile"):
        out = tmp_path / algorithm
        assert main(["train", "--dataset", "glyphs", "--init", str(init), "--algorithm", algorithm,
                     "--head-init", "prototypes", "--head-scale", "0.35", "--scope", "last_block", "--ways", "5",
                     "--min-ways", "3", "--inner-steps", "1", "--inner-lr", "0.1", "--outer-lr", "1e-4",
                     "--meta-batch", "2", "--iterations", "2", "--eval-tasks", "3", "--out", str(out),
                     "--no-progress"]) == 0, capsys.readouterr().err
        assert json.loads((out / "summary.json").read_text())["validation"]["untrained_adapted"]["tasks"] == 3


class _Diverging:
    """A run whose second step's loss is NaN."""

    def __init__(self) -> None:
        self.iteration, self.history, self.saved = 0, [], 0

    def step(self) -> dict:
        self.iteration += 1
        record = {"loss": 1.0 if self.iteration == 1 else math.nan}
        self.history.append(record)
        return record

    def restore(self, path) -> None:
        raise AssertionError("not resumed")

    def save(self, path) -> None:
        self.saved += 1


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tmp_path):
    run = _Diverging()
    with pytest.raises(DivergedError, match="diverged at step 2 \\(loss nan\\): lower the learning rates"):
        drive(run, 5, desc="fomaml", save=run.save, checkpoint_dir=tmp_path, checkpoint_every=1,
              metrics_path=tmp_path / "metrics.jsonl", progress=False)
    assert run.saved == 1  # the finite first step only
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1.0]


def test_a_checkpoint_refuses_nan_with_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot save config.json: .*did training diverge"):
        save_checkpoint(tmp_path / "c", Conv4(ways=2, hidden=4), {"training": {"inner_lr": float("nan")}})
    assert not (tmp_path / "c").exists()


def test_a_pretraining_checkpoint_adapts_as_its_readout_unless_overridden():
    assert adaptation_settings({}) == PRETRAINED_READOUT
    assert adaptation_settings({}, inner_steps=3, scope="last_block") == {**PRETRAINED_READOUT, "inner_steps": 3,
                                                                        "scope": "last_block"}
    training = {"inner_lr": 0.2, "inner_steps": 4, "scope": "all"}
    assert adaptation_settings(training, head_scale=None)["inner_lr"] == 0.2
    assert adaptation_settings(training)["head_init"] == "learned"


def test_eval_of_a_pretraining_checkpoint_is_its_prototype_readout(tmp_path, capsys):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "pre", Conv4(ways=8, hidden=4).eval(), {"pretraining": {"epochs": 1}})
    assert main(["eval", str(path), "--dataset", "glyphs", "--tasks", "4", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["head_init"], result["scope"], result["inner_steps"]) == ("prototypes", "head", 0)


@pytest.mark.parametrize("scores, ways, expected", [
    ([0.2, 0.2, 0.2, 0.2], 5, True), ([0.9, 1.0, 0.95, 1.0], 5, False), ([0.3, 0.1, 0.2, 0.2], 5, True),
    ([0.5, 0.55, 0.6, 0.5], 5, False),
])
def test_accuracy_at_chance_is_flagged(scores, ways, expected, caplog):
    result = EvalResult("accuracy", np.array(scores))
    assert at_chance(result, ways) is expected
    with caplog.at_level(logging.WARNING, logger="edgeadapt"):
        assert warn_if_chance(result, ways) is expected
    assert ("no better than chance" in caplog.text) is expected


def test_a_continual_task_never_learned_is_named(caplog):
    matrix = [[0.95, 0.1], [0.5, 0.11]]
    with caplog.at_level(logging.WARNING, logger="edgeadapt"):
        assert warn_if_never_learned(matrix, ["rot0", "rot90"], 10) == ["rot90"]
    assert "rot90 never learned" in caplog.text


def test_a_missing_extra_names_what_to_install():
    with pytest.raises(MissingExtraError, match=r"decoding needs Pillow, which is not installed: pip install "
                                                r"'\./\[images\]'"):
        require("PIL.no_such_module_here", "images", "decoding")
    assert require("json", "none", "parsing") is json


def test_the_example_without_pillow_is_one_line_and_exit_2():
    code = ("import runpy, sys; sys.modules['PIL'] = None; sys.argv = ['personalise_omniglot.py']; "
            f"runpy.run_path({str(ROOT / 'examples/personalise_omniglot.py')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "no Omniglot zip" in done.stderr:
        pytest.skip("no Omniglot background set here")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "needs Pillow, which is not installed: pip install './[runtime,images]'" in done.stderr


@pytest.mark.parametrize("verbosity, ours, exporters", [(0, logging.INFO, logging.ERROR),
                                                         (1, logging.DEBUG, logging.ERROR),
                                                         (2, logging.DEBUG, logging.NOTSET)])
def test_logging_keeps_the_exporters_quiet_below_vv(verbosity, ours, exporters, monkeypatch):
    for name in ("edgeadapt", "torch.onnx", ""):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    logging.getLogger("torch.onnx").setLevel(logging.NOTSET)
    configure_logging(verbosity)
    assert logging.getLogger("edgeadapt").level == ours
    assert logging.getLogger("torch.onnx").level == exporters
    assert logging.getLogger().level == (logging.DEBUG if verbosity >= 2 else logging.WARNING)


def test_verbose_export_prints_a_few_lines_not_thousands(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "c", Conv4(ways=3, hidden=4),
                           {"training": {"inner_lr": 0.1, "inner_steps": 1, "scope": "head"}})
    done = subprocess.run([sys.executable, "-m", "edgeadapt.cli", "-v", "export", str(path), "-o",
                           str(tmp_path / "a"), "--max-shots", "1", "--no-executorch"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len((done.stdout + done.stderr).splitlines()) < 20, done.stdout + done.stderr


@pytest.mark.parametrize("method", sorted(HYPERPARAMETERS))
def test_continual_defaults_are_the_tuned_recipe(method, tmp_path):
    args = build_parser().parse_args(["continual", "--method", method, "--out", str(tmp_path)])
    config = _config(args)
    tuned, stream = HYPERPARAMETERS[method], STREAMS["mlp"]
    assert config.controller.inner_lr == tuned["inner_lr"]
    assert config.ewc_lambda == tuned.get("ewc_lambda", config.ewc_lambda)
    if "meta_lr" in tuned:
        assert (config.controller.meta_lr, config.controller.inner_steps) == (tuned["meta_lr"], tuned["inner_steps"])
    assert (config.steps_per_task, config.batch_size, args.train_size) == (stream.steps, stream.batch,
                                                                            stream.train_size)
    given = _config(build_parser().parse_args(["continual", "--method", method, "--inner-lr", "0.01",
                                               "--arch", "cnn", "--out", str(tmp_path)]))
    assert given.controller.inner_lr == 0.01 and given.steps_per_task == STREAMS["cnn"].steps
