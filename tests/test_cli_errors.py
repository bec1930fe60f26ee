"""The CLI's error contract: every mistake is one line on stderr and exit status 2; nothing of the user's is
replaced without --force; export is quiet and can sign; --version; a warning when evaluation sees training classes."""

import json
import logging
import os
import stat

import pytest
import torch

import edgeadapt.runtime as rt
from edgeadapt.sdk import Conv4, save_checkpoint
from edgeadapt.cli import main
from edgeadapt.sdk.recipes import make_sampler

TRAINING = {"algorithm": "reptile", "inner_lr": 0.5, "inner_steps": 1, "scope": "all", "loss": "cross_entropy"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 4-way Conv4 checkpoint trained (nominally) on every glyph class."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    return save_checkpoint(path, Conv4(ways=4, hidden=4), {"training": TRAINING,
                                                            "data": {"dataset": "glyphs", "split": "all"}})


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args, message", [
    (["eval", "{ckpt}", "--dataset", "glyphs", "--ways", "25"], "--ways 25 exceeds the 4 outputs"),
    (["eval", "{ckpt}", "--inner-steps", "-1"], "--inner-steps: must be an integer >= 0"),
    (["eval", "{ckpt}", "--device", "bogus"], "unknown device 'bogus'"),
    (["export", "{ckpt}", "-o", "{tmp}/a", "--max-ways", "1"], "--max-ways: must be an integer >= 2"),
    (["export", "{ckpt}", "-o", "{tmp}/a", "--max-ways", "5"], "max_ways must be between 2 and the model's 4 outputs"),
    (["export", "{ckpt}", "-o", "{tmp}/a", "--sign", "{tmp}/no-key.pem"], "no signing key"),
    (["train", "--out", "{tmp}/run", "--iterations", "x"], "--iterations: must be an integer"),
    (["bogus"], "invalid choice"),
])
def test_mistakes_are_one_line_and_exit_2(checkpoint, tmp_path, capsys, args, message):
    argv = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in args]
    try:
        code = main(argv)
    except SystemExit as e:  # the parser's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_parser_error(checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(checkpoint), "--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_export_never_replaces_a_file(checkpoint, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    _one_line_error(capsys, ["export", str(checkpoint), "-o", str(target)], "is not an artifact folder")
    assert target.read_text() == "mine"


def test_train_refuses_a_file_and_an_existing_run_without_force(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    base = ["train", "--dataset", "glyphs", "--ways", "3", "--hidden", "4", "--iterations", "1", "--inner-steps", "1",
            "--eval-tasks", "0", "--no-progress", "--out"]
    _one_line_error(capsys, base + [str(tmp_path / "file")], "is a file")
    assert main(base + [str(tmp_path / "run")]) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    _one_line_error(capsys, base + [str(tmp_path / "run")], "already holds a run")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    _one_line_error(capsys, base + [str(tmp_path / "empty"), "--resume"], "no checkpoint to continue")
    assert main(base + [str(tmp_path / "run"), "--force", "--seed", "1"]) == 0


def test_version_and_a_help_without_internal_docstrings(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"edgeadapt {version('edgeadapt')}"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "SDK module" not in capsys.readouterr().out


@pytest.mark.parametrize("trained_on, evaluated_on, warned", [
    ("all", "validation", "200 of the 200 classes evaluated here were in this checkpoint's training data"),
    ("train", "validation", None),  # other classes, whatever the splits are called
    ("train", "train", "600 of the 600 classes"),
])
def test_eval_warns_when_it_meets_the_classes_it_was_trained_on(tmp_path, caplog, trained_on, evaluated_on, warned):
    torch.manual_seed(0)
    _, data = make_sampler("glyphs", None, trained_on, 4, 1, 1, 0, training=True)
    path = save_checkpoint(tmp_path / "checkpoint", Conv4(ways=4, hidden=4), {"training": TRAINING, "data": data})
    with caplog.at_level(logging.INFO, logger="edgeadapt"):
        assert main(["eval", str(path), "--dataset", "glyphs", "--split", evaluated_on, "--ways", "3",
                     "--tasks", "2"]) == 0
    overlaps = [r.message for r in caplog.records if "training data" in r.message]
    assert overlaps == ([] if warned is None else [overlaps[0]]) and (warned is None or warned in overlaps[0])


def test_eval_of_a_checkpoint_without_class_hashes_says_it_cannot_tell(checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="edgeadapt"):
        assert main(["eval", str(checkpoint), "--dataset", "glyphs", "--ways", "3", "--tasks", "2"]) == 0
    assert "cannot check that the evaluated classes are unseen" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "training data" in r.message]


def test_folders_get_the_usual_permissions(checkpoint):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o777 & ~umask


def test_export_is_quiet_signs_and_is_replaced_only_with_force(checkpoint, tmp_path, capsys):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    out = tmp_path / "artifact"
    assert main(["export", str(checkpoint), "-o", str(out), "--max-shots", "1", "--no-executorch",
                 "--sign", str(tmp_path / "key.pem")]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines()[1:] == [f"wrote {out} signed"] and printed.err == "", printed
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert rt.load(out, public_key=raw).manifest["format_version"] == 4
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    before = json.loads((out / "manifest.json").read_text())
    _one_line_error(capsys, ["export", str(checkpoint), "-o", str(out)], "already holds an artifact")
    assert json.loads((out / "manifest.json").read_text()) == before
