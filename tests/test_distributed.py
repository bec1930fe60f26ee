"""Several processes under torchrun (gloo on CPU) take the same steps as one; faults and failed rendezvous."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeadapt import cli
from edgeadapt.sdk.checkpoint import load_checkpoint
from edgeadapt.sdk.backbones import BackboneSettings
from edgeadapt.sdk.recipes import build_default_model

from distributed_pretrain import main as pretrain_tiny

TESTS = Path(__file__).parent
TRAIN = ["train", "--dataset", "glyphs", "--hidden", "4", "--ways", "3", "--min-ways", "2", "--shots", "1",
         "--query-shots", "2", "--meta-batch", "3", "--inner-steps", "2", "--eval-tasks", "0", "--no-progress",
         "--seed", "3"]


def _torchrun(*args: str, extra: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 [extra] args`` with one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *extra, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=TESTS,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict()
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=1e-6, msg=name)


def _assert_trained(checkpoint: Path) -> None:
    """Training moved the weights away from the seed's initial model (so agreeing weights mean agreeing steps)."""
    torch.manual_seed(3)
    untrained = build_default_model("glyphs", BackboneSettings(3, 4, "relu")).state_dict()
    trained = load_checkpoint(checkpoint)[0].state_dict()
    assert max((trained[k] - untrained[k]).abs().max().item() for k in trained) > 1e-3


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_metrics(a: Path, b: Path) -> None:
    for x, y in zip(_metrics(a), _metrics(b), strict=True):
        assert x["iteration"] == y["iteration"]
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
        assert x["accuracy"] == pytest.approx(y["accuracy"], abs=1e-9)


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml", "maml"])
def test_two_processes_train_like_one(tmp_path, algorithm):
    one, two = tmp_path / "one", tmp_path / "two"
    arguments = [*TRAIN, "--algorithm", algorithm, "--iterations", "4", "--checkpoint-every", "2"]
    assert cli.main([*arguments, "--out", str(one)]) == 0
    _torchrun("-m", "edgeadapt.cli", *arguments, "--out", str(two))
    _assert_trained(one / "checkpoint")
    _assert_same_weights(one / "checkpoint", two / "checkpoint")
    _assert_same_metrics(one, two)
    config = json.loads((two / "checkpoint" / "config.json").read_text())
    assert (config["world_size"], config["backend"]) == (2, "gloo")
    assert json.loads((one / "checkpoint" / "config.json").read_text())["world_size"] == 1
    summary = json.loads((two / "summary.json").read_text())
    assert (summary["world_size"], summary["backend"], summary["iterations"]) == (2, "gloo", 4)


@pytest.mark.slow
def test_a_run_of_two_processes_resumes_in_one(tmp_path):
    arguments = [*TRAIN, "--algorithm", "fomaml", "--checkpoint-every", "2"]  # constant rate: --iterations may grow
    assert cli.main([*arguments, "--iterations", "4", "--out", str(tmp_path / "straight")]) == 0
    _torchrun("-m", "edgeadapt.cli", *arguments, "--iterations", "2", "--out", str(tmp_path / "split"))
    assert cli.main([*arguments, "--iterations", "4", "--out", str(tmp_path / "split"), "--resume"]) == 0
    _assert_same_weights(tmp_path / "straight" / "checkpoint", tmp_path / "split" / "checkpoint")
    _assert_same_metrics(tmp_path / "straight", tmp_path / "split")


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_loses_nothing(tmp_path):
    arguments = [*TRAIN, "--algorithm", "maml", "--iterations", "6", "--checkpoint-every", "2"]
    assert cli.main([*arguments, "--out", str(tmp_path / "straight")]) == 0
    marker = tmp_path / "rank1-killed"
    _torchrun("distributed_fault.py", *arguments, "--out", str(tmp_path / "faulty"), extra=("--max-restarts", "1"),
              env={"EDGEADAPT_FAULT_AT": "3", "EDGEADAPT_FAULT_MARKER": str(marker)})
    assert marker.exists()  # rank 1 did die at iteration 4 (after the checkpoint at 2) and was restarted
    _assert_same_weights(tmp_path / "straight" / "checkpoint", tmp_path / "faulty" / "checkpoint")
    _assert_same_metrics(tmp_path / "straight", tmp_path / "faulty")
    assert [r["iteration"] for r in _metrics(tmp_path / "faulty")] == [1, 2, 3, 4, 5, 6]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_rendezvous_that_cannot_form_fails_with_a_clear_error(tmp_path, rank):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgeadapt.cli", *TRAIN, "--iterations", "2",
                           "--rendezvous-timeout", "3", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "edgeadapt train: error: the 2-process group (gloo, rendezvous 127.0.0.1:" in done.stderr
    assert "did not form within 3 s" in done.stderr
    assert time.monotonic() - started < 100
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.slow
def test_pretraining_in_two_processes_takes_the_steps_of_one(tmp_path):
    pretrain_tiny(str(tmp_path / "one"))
    _torchrun("distributed_pretrain.py", str(tmp_path / "two"))
    _assert_same_weights(tmp_path / "one", tmp_path / "two")
    lines = [[json.loads(x) for x in (tmp_path / f"{n}.metrics.jsonl").read_text().splitlines()] for n in ("one", "two")]
    assert [r["iteration"] for r in lines[1]] == list(range(1, 9))  # 2 epochs of 4 batches (the last of 30)
    for a, b in zip(*lines, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["accuracy"] == pytest.approx(b["accuracy"])
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
