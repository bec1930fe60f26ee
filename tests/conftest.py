"""Fixtures shared by the runtime tests: one tiny exported artifact per session (or EDGEADAPT_TEST_ARTIFACT)."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifact(tmp_path_factory):
    """(artifact folder, the torch model it was exported from or None): a 4-way, max 3-shot Conv4 (8 filters)."""
    if os.environ.get("EDGEADAPT_TEST_ARTIFACT"):
        return Path(os.environ["EDGEADAPT_TEST_ARTIFACT"]), None
    torch = pytest.importorskip("torch")
    from edgeadapt.export import export_artifact
    from edgeadapt.sdk import Conv4, save_checkpoint

    folder = tmp_path_factory.mktemp("artifact")
    torch.manual_seed(0)
    model = Conv4(ways=4, hidden=8)
    training = {"algorithm": "reptile", "inner_lr": 0.5, "inner_steps": 2, "scope": "all", "loss": "cross_entropy"}
    save_checkpoint(folder / "ckpt", model, {"training": training})
    export_artifact(folder / "ckpt", folder / "model", max_shots=3, executorch=False)  # tests/test_executorch.py
    return folder / "model", model
