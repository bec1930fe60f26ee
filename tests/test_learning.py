"""End-to-end: meta-learning measurably helps (slow: run with `pytest -m slow`)."""

import re
from pathlib import Path

import pytest
import torch

from edgeadapt.sdk import Conv4, evaluate, train_maml
from edgeadapt.sdk.datasets import DatasetError
from edgeadapt.sdk.recipes import make_sampler

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quickstart_is_two_commands():
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert "pip install" in lines[0] and "edgeadapt train" in lines[0]
    assert "pytest" in lines[1]


def _omniglot_or_skip(split, shots, training):
    try:
        return make_sampler("omniglot", None, split, 5, shots, 5, seed=3, training=training)[0]
    except DatasetError as e:
        pytest.skip(f"Omniglot not available: {e}")


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, outer_lr", [("reptile", 1.0), ("fomaml", 0.003)])
def test_meta_training_on_glyphs_beats_an_untrained_network(algorithm, outer_lr):
    train, _ = make_sampler("glyphs", None, "train", 5, 1, 5, seed=0, training=True)
    torch.manual_seed(0)
    untrained = Conv4(ways=5, hidden=32)
    model = Conv4(ways=5, hidden=32)
    model.load_state_dict(untrained.state_dict())
    train_maml(model, train, 0.1, outer_lr, 5, algorithm, 5, 150, progress=False)

    def held_out(m):
        return evaluate(m, make_sampler("glyphs", None, "validation", 5, 1, 5, seed=1, training=False)[0], 0.1, 5, 200)

    before, after = held_out(untrained), held_out(model)
    assert after.mean > before.mean + 0.10, (before, after)


@pytest.mark.slow
def test_fomaml_on_omniglot_beats_an_untrained_network_within_150_iterations():
    train = _omniglot_or_skip("train", 5, training=True)
    torch.manual_seed(0)
    untrained = Conv4(ways=5)
    model = Conv4(ways=5)
    model.load_state_dict(untrained.state_dict())
    train_maml(model, train, 0.1, 0.001, 5, "fomaml", 5, 150, progress=False)

    def held_out(m):
        return evaluate(m, _omniglot_or_skip("validation", 1, training=False), 0.1, 5, 200)

    before, after = held_out(untrained), held_out(model)
    assert after.mean > before.mean + 0.10, (before, after)
