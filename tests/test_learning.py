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


def _sampler(dataset, split, shots, seed):
    try:
        return make_sampler(dataset, None, split, 5, shots, 5, seed=seed, training=split == "train")[0]
    except DatasetError as e:
        pytest.skip(f"{dataset} not available: {e}")


def _held_out_before_and_after(dataset, hidden, algorithm, outer_lr, train_shots):
    """5-way 1-shot held-out accuracy of an untrained Conv4 and of the same init meta-trained 150 iterations."""
    train = _sampler(dataset, "train", train_shots, seed=0)
    torch.manual_seed(0)
    untrained = Conv4(ways=5, hidden=hidden)
    model = Conv4(ways=5, hidden=hidden)
    model.load_state_dict(untrained.state_dict())
    train_maml(model, train, 0.1, outer_lr, 5, algorithm, 5, 150, progress=False)
    return [evaluate(m, _sampler(dataset, "validation", 1, seed=1), 0.1, 5, 200) for m in (untrained, model)]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, outer_lr", [("reptile", 0.1), ("fomaml", 0.003)])
def test_meta_training_on_glyphs_beats_an_untrained_network(algorithm, outer_lr):
    before, after = _held_out_before_and_after("glyphs", 32, algorithm, outer_lr, train_shots=1)
    assert after.mean > before.mean + 0.10, (before, after)


@pytest.mark.slow
def test_fomaml_on_omniglot_beats_an_untrained_network():
    before, after = _held_out_before_and_after("omniglot", 64, "fomaml", 0.001, train_shots=5)
    assert after.mean > before.mean + 0.10, (before, after)
