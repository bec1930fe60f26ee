"""A bounded replay memory for a continual run: at most ``capacity`` examples, chosen from everything offered by
one of the policies of :mod:`edgeadapt.runtime.memory` (uniform reservoir or class-balanced reservoir), the same
definitions the device's stored support set uses.

Offers come in the order the stream gives them; the policy's randomness is a numpy generator whose state is saved
with the memory, so a resumed run keeps exactly the examples an uninterrupted one keeps.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import torch

from edgeadapt.runtime.memory import POLICIES

from ..errors import CheckpointError, ConfigError


class ReplayMemory:
    """At most ``capacity`` examples of shape ``example_shape`` and their labels, kept by ``policy``."""

    def __init__(self, capacity: int, policy: str, example_shape: tuple[int, ...], seed: int):
        if policy not in POLICIES:
            raise ConfigError(f"memory policy must be one of {sorted(POLICIES)}, got {policy!r}")
        if capacity < 1:
            raise ConfigError(f"a memory holds at least 1 example, got capacity {capacity}")
        self.capacity, self.policy = capacity, policy
        self.x = torch.zeros((capacity, *example_shape))
        self.y = torch.zeros(capacity, dtype=torch.int64)
        self.logits: torch.Tensor | None = None  # the network's outputs when each example was offered, if given
        self.size = 0
        self.seen = 0
        self.seen_per_class: Counter = Counter()
        self.rng = np.random.default_rng([seed, 0x4D454D])  # "MEM": the memory's own stream

    def __len__(self) -> int:
        return self.size

    def offer(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer the examples ``x`` labelled ``y`` (with the network's ``logits`` for them, for distillation), in
        order, to the policy."""
        if logits is not None and self.logits is None:
            self.logits = torch.zeros((self.capacity, logits.shape[1]))
        choose = POLICIES[self.policy]
        labels = self.y.numpy()
        for offered, (example, label) in enumerate(zip(x, y.tolist())):
            slot = choose(labels[: self.size], self.capacity, label, self.seen, self.seen_per_class[label], self.rng)
            if slot is not None:
                self.x[slot], self.y[slot] = example, label
                if logits is not None:
                    self.logits[slot] = logits[offered]
                self.size = max(self.size, slot + 1)
            self.seen += 1
            self.seen_per_class[label] += 1

    def sample(self, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``k`` stored examples drawn uniformly with replacement by ``generator``: inputs, labels, logits (or None)."""
        index = torch.randint(self.size, (k,), generator=generator)
        return self.x[index], self.y[index], None if self.logits is None else self.logits[index]

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The stored examples (tensors) and the counts and generator state (JSON), for a checkpoint."""
        counts = {str(label): n for label, n in sorted(self.seen_per_class.items())}
        tensors = {"memory.x": self.x[: self.size].clone(), "memory.y": self.y[: self.size].clone()}
        if self.logits is not None:
            tensors["memory.logits"] = self.logits[: self.size].clone()
        return (tensors,
                {"size": self.size, "seen": self.seen, "seen_per_class": counts,
                 "rng": json.dumps(self.rng.bit_generator.state)})

    def load(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`state` saved."""
        try:
            size = int(state["size"])
            fits = 0 <= size <= self.capacity and tensors["memory.y"].shape == (size,)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the replay memory's state is incomplete: {e}") from e
        if not fits:
            raise CheckpointError(f"{size} stored examples do not fit a replay memory of {self.capacity}")
        try:
            self.x[:size], self.y[:size] = tensors["memory.x"], tensors["memory.y"]
            if "memory.logits" in tensors:
                self.logits = torch.zeros((self.capacity, tensors["memory.logits"].shape[1]))
                self.logits[:size] = tensors["memory.logits"]
            self.size, self.seen = size, int(state["seen"])
            self.seen_per_class = Counter({int(k): int(v) for k, v in state["seen_per_class"].items()})
            self.rng.bit_generator.state = json.loads(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"the replay memory's state is incomplete or does not fit: {e}") from e
