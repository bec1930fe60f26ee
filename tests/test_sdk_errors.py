"""Every failure of the SDK and the exporter is an SDKError: corrupt checkpoints, missing data, bad settings."""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
from pathlib import Path

import pytest

from edgeadapt.sdk import (
    CheckpointError, ConfigError, Conv4, DatasetError, EpisodeSampler, InnerLoop, MetaConfig, SDKError, build_model,
    load_checkpoint, save_checkpoint,
)
from edgeadapt.cli import main
from edgeadapt.sdk.datasets import find_data_dir, load_omniglot
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain

from helpers import labelled_dataset

ROOT = Path(__file__).resolve().parent.parent


def _reseal(folder: Path) -> None:
    """Rewrite a checkpoint's manifest so that its hashes match the files again (a consistent but bad checkpoint)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_corrupt_checkpoint_is_an_sdk_error(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", Conv4(ways=3, hidden=4))
    (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:50])
    with pytest.raises(SDKError, match="sha256") as error:
        load_checkpoint(path)
    assert isinstance(error.value, CheckpointError)


@pytest.mark.parametrize("edit, message", [('"activation": "relu"', '"activation": "tanh"'),
                                           ('"name": "Conv4"', '"name": "Nope"')])
def test_a_checkpoint_with_a_bad_model_setting_is_a_checkpoint_error(tmp_path, edit, message):
    path = save_checkpoint(tmp_path / "ckpt", Conv4(ways=3, hidden=4))
    config = (path / "config.json").read_text()
    assert edit in config
    (path / "config.json").write_text(config.replace(edit, message))
    _reseal(path)
    with pytest.raises(CheckpointError, match="cannot rebuild the model"):
        load_checkpoint(path)


def test_a_missing_data_folder_is_an_sdk_error(tmp_path):
    with pytest.raises(SDKError, match="does not exist") as error:
        find_data_dir(tmp_path / "nowhere")
    assert isinstance(error.value, DatasetError)
    with pytest.raises(DatasetError):
        load_omniglot(tmp_path / "nowhere" / "images_background.zip", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("make, message", [
    (lambda: InnerLoop(Conv4(), inner_lr=0.0, inner_steps=1), "inner_lr"),
    (lambda: InnerLoop(Conv4(), 0.1, 1, scope="body"), "scope"),
    (lambda: MetaConfig("sgd", inner_lr=0.1, outer_lr=0.1, inner_steps=1, meta_batch_size=1, num_iterations=1),
     "algorithm"),
    (lambda: EpisodeSampler(labelled_dataset(n_classes=4), ways=5, shots=1), "5-way tasks need 5 classes"),
    (lambda: build_model("Nope", {}), "unknown model"),
    (lambda: Conv4(activation="tanh"), "activation"),
    (lambda: labelled_dataset().select_groups(["Klingon"]), "unknown groups"),
])
def test_bad_settings_are_config_errors(make, message):
    with pytest.raises(ConfigError, match=message) as error:
        make()
    assert isinstance(error.value, SDKError) and isinstance(error.value, ValueError)  # old `except ValueError` holds


def test_bad_export_settings_are_sdk_errors(tmp_path):
    from edgeadapt.export import export_artifact

    checkpoint = save_checkpoint(tmp_path / "ckpt", Conv4(ways=3, hidden=4),
                                 {"training": {"inner_lr": 0.5, "inner_steps": 1}})
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(SDKError, match="not an artifact folder"):
        export_artifact(checkpoint, tmp_path / "a-file")
    with pytest.raises(SDKError, match="max_ways"):
        export_artifact(checkpoint, tmp_path / "artifact", max_ways=1)
    assert (tmp_path / "a-file").read_text() == "mine" and not (tmp_path / "artifact").exists()


def test_the_cli_reports_an_sdk_error_in_one_line(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "ckpt", Conv4(ways=3, hidden=4), {"training": {"inner_lr": 0.5, "inner_steps": 1}})
    (path / "model.safetensors").write_bytes(b"\0" * 10)
    assert main(["eval", str(path), "--dataset", "glyphs", "--tasks", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeadapt eval: error:") and "sha256" in err and len(err.splitlines()) == 1


def _raised_builtins(path: Path) -> list[str]:
    """``file:line name`` of every ``raise`` of a built-in exception class in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.id if isinstance(target, ast.Name) else None
            if name and isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name),
                                                                                      BaseException):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_sdk_and_export_raise_only_sdk_errors():
    """No built-in exception is raised by sdk/ or export/ (abstract methods' NotImplementedError aside)."""
    raised = [r for folder in ("sdk", "export") for path in sorted((ROOT / folder).rglob("*.py"))
              for r in _raised_builtins(path)]
    assert [r for r in raised if not r.endswith(" NotImplementedError")] == []
    abstract = [r for r in raised if r.endswith(" NotImplementedError")]
    assert {r.split(":")[0] for r in abstract} <= {"sdk/algorithms/base.py", "sdk/datasets/base.py", "sdk/networks.py"}


def test_every_sdk_and_export_error_class_is_an_sdk_error():
    from edgeadapt.export import errors as export_errors
    from edgeadapt.sdk import errors

    classes = [c for module in (errors, export_errors) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(classes) >= 8 and all(issubclass(c, errors.SDKError) for c in classes)
    assert {"ExportError", "UnsupportedExportError"} <= {c.__name__ for c in classes}


def test_resuming_without_a_checkpoint_folder_is_a_config_error():
    classes = labelled_dataset(3, 4)
    with pytest.raises(ConfigError, match="resume=True needs checkpoint_dir"):
        pretrain(Conv4(ways=3, hidden=4), classes, PretrainConfig(epochs=1, batch_size=4), resume=True,
                 progress=False)
