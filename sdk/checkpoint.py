"""Checkpoints: safetensors weights + JSON config, hashed in a manifest, written atomically.

Layout of a checkpoint folder::

    model.safetensors      parameters and buffers
    config.json            model spec, algorithm, hyperparameters, data, seed
    state.safetensors      (optional) optimiser and sampler tensors, for exact resumption
    state.json             (optional) iteration, history, optimiser scalars
    lr_scales.safetensors  (optional) per-parameter inner learning rates, as the inner loop multiplies them
    manifest.json          format version and the sha256 of every file above

Nothing is ever unpickled: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from edgeadapt.runtime.errors import ArtifactError, InputError
from edgeadapt.runtime.format.files import atomic_folder, read_regular_file, sha256_bytes
from edgeadapt.runtime.format.inputs import LEGACY, InputSpec
from edgeadapt.runtime.format.manifest import MAX_MANIFEST_BYTES, parse_json

from .errors import CheckpointError
from .models import build_model, model_spec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LR_SCALES = "lr_scales.safetensors"


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    config: dict[str, Any] | None = None,
    state_tensors: dict[str, torch.Tensor] | None = None,
    state: dict[str, Any] | None = None,
    lr_scales: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (and optionally training state and per-parameter inner rates) to the folder ``path``,
    atomically.

    The folder is assembled beside ``path`` and swapped in by rename, so an interrupted save
    leaves the previous checkpoint intact. ``config`` must be JSON-serialisable.
    """
    with atomic_folder(path) as staging:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, staging / "model.safetensors")
        _write_json(staging / "config.json", {"model": model_spec(model), **(config or {})})
        if state_tensors is not None or state is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in (state_tensors or {}).items()},
                      staging / "state.safetensors")
            _write_json(staging / "state.json", state or {})
        if lr_scales is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in lr_scales.items()}, staging / LR_SCALES)
        files = {f.name: sha256_bytes(f.read_bytes()) for f in sorted(staging.iterdir())}
        _write_json(staging / MANIFEST, {"format_version": FORMAT_VERSION, "files": files})
    return Path(path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and return it, in eval mode, with its config, after verifying every hash."""
    folder = verify_checkpoint(path)
    config = _read_json(folder / "config.json")
    spec = config.get("model", {})
    try:
        model = build_model(spec["name"], spec["config"])
    except (KeyError, TypeError, ValueError) as e:  # ValueError: the model's own ConfigError on a bad setting
        raise CheckpointError(f"{folder / 'config.json'}: cannot rebuild the model from {spec!r}: {e}") from e
    weights = _load_tensors(folder / "model.safetensors")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} does not match {spec['name']}: {e}") from e
    return model.to(device).eval(), config


def initialise_from(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` whose name and shape match; return the
    names left as they were (e.g. a head with another number of classes). The backbone must match entirely."""
    source, _ = load_checkpoint(path)
    return copy_matching(model, source.state_dict(), str(path))


def start_from(model: nn.Module, weights: str | os.PathLike | dict[str, torch.Tensor]) -> list[str]:
    """Starting weights for ``model`` from a state dict, or a ``.safetensors`` file holding one (never a pickle):
    every tensor whose name and shape match is copied; the backbone must match entirely (a head of another size
    stays as initialised). Returns the names left as they were; CheckpointError otherwise."""
    if isinstance(weights, dict):
        return copy_matching(model, weights, "the state dict")
    path = Path(weights)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: starting weights are read from .safetensors files only (save a state dict "
                              "with safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'))")
    return copy_matching(model, _load_tensors(path), str(path))


def copy_matching(model: nn.Module, saved: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load the tensors of ``saved`` that fit ``model`` by name and shape; CheckpointError unless every tensor
    outside the head fits. Returns the names left as they were."""
    own = model.state_dict()
    fits = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    backbone = [k for k in own if not k.startswith("head.")]
    missing = [k for k in backbone if k not in fits]
    if missing:
        raise CheckpointError(f"{source} does not fit this model's backbone: no matching {missing[:3]}")
    model.load_state_dict({**own, **fits})
    return sorted(set(own) - set(fits))


def load_training_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimiser/sampler tensors and JSON state saved for resuming training."""
    folder = verify_checkpoint(path)
    if not (folder / "state.json").exists():
        raise CheckpointError(f"{folder} holds weights only, no training state to resume from")
    return _load_tensors(folder / "state.safetensors"), _read_json(folder / "state.json")


def load_lr_scales(path: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """The per-parameter inner learning rates the run at ``path`` adapted with, or None if it used one rate."""
    folder = verify_checkpoint(path)
    if LR_SCALES not in _read_json(folder / MANIFEST)["files"]:
        if (folder / LR_SCALES).exists():
            raise CheckpointError(f"{folder / LR_SCALES} is not listed in the manifest: added after the save")
        return None
    return _load_tensors(folder / LR_SCALES)


def verify_checkpoint(path: str | os.PathLike) -> Path:
    """Check the manifest's format version and every file's sha256; return the folder."""
    folder = Path(path)
    if not folder.is_dir():
        hint = ""
        backups = sorted(folder.parent.glob(f".{folder.name}.*.old"))
        if backups:
            hint = f" (an interrupted save left the previous checkpoint at {backups[-1]})"
        raise CheckpointError(f"no checkpoint folder at {folder}{hint}")
    manifest = _read_json(folder / MANIFEST)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / MANIFEST}: unknown format_version {manifest.get('format_version')!r}, "
            f"this edgeadapt reads version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files or "config.json" not in files:
        raise CheckpointError(f"{folder / MANIFEST} does not list model.safetensors and config.json")
    for name, expected in files.items():
        if sha256_bytes(_read_bytes(folder, str(name))) != expected:
            raise CheckpointError(f"{folder / name} does not match its sha256 in the manifest: corrupt or modified")
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Strict UTF-8 JSON (no NaN or infinity, no lone surrogates: what the loader refuses), or CheckpointError."""
    try:
        text = (json.dumps(data, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n").encode()
    except ValueError as e:  # UnicodeEncodeError is a ValueError too
        advice = "text that is not valid Unicode" if isinstance(e, UnicodeError) else "did training diverge?"
        raise CheckpointError(f"cannot save {path.name}: {e} ({advice})") from None
    path.write_bytes(text)


def _read_bytes(folder: Path, name: str, limit: int = 1 << 32) -> bytes:
    """A regular file inside the checkpoint folder (bounded, no links out), or CheckpointError."""
    try:
        return read_regular_file(folder, name, limit)
    except ArtifactError as e:
        raise CheckpointError(str(e)) from e


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return parse_json(_read_bytes(path.parent, path.name, 64 * MAX_MANIFEST_BYTES), str(path))
    except ArtifactError as e:
        raise CheckpointError(str(e)) from e


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e


def checkpoint_input(config: dict[str, Any]) -> InputSpec:
    """The input description a checkpoint's model was trained on (``config["data"]["input"]``, as its dataset
    made it); for a checkpoint written before input descriptions, strokes of the model's ``image_size`` and
    ``in_channels``, as the built-in datasets were. CheckpointError when neither is there."""
    described = config.get("data", {}).get("input")
    if described is not None:
        try:
            return InputSpec.from_json(described)
        except InputError as e:
            raise CheckpointError(f"the checkpoint's input description is not valid: {e}") from None
    model = config.get("model", {}).get("config", {})
    if "image_size" not in model:
        raise CheckpointError("the checkpoint describes no input (data.input) and its model no image_size: "
                              "train it with a dataset that describes its inputs")
    size = model["image_size"]
    return InputSpec((model.get("in_channels", 1), size, size), **LEGACY)
