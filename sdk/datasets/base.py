"""The class-indexed image dataset that every few-shot task is drawn from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterator, NamedTuple

import torch

from edgeadapt.runtime.format.errors import InputError
from edgeadapt.runtime.format.inputs import InputSpec

from ..errors import ConfigError, ConfigTypeError

# Drawings of the built-in datasets (Omniglot, glyphs, MNIST): strokes 1.0 on 0.0, resized with Lanczos.
STROKES = {"modality": "strokes", "polarity": "ink_high", "resize": "lanczos"}


@dataclass(frozen=True)
class ClassDataset:
    """Examples grouped by class, any number per class (ragged), stored class after class.

    ``examples`` is ``(n_examples, *shape)``: float32 model inputs as they are, or uint8 pixels, which
    :meth:`decode` scales to the input description's value range and normalises (a folder of photos stays in
    uint8, a quarter of float32's memory, and may be memory-mapped from a cache). ``class_sizes[c]`` examples of
    class ``c`` follow those of class ``c - 1``. ``class_names`` and ``groups`` hold one entry per class (``groups``
    names what a class belongs to, e.g. an Omniglot alphabet, a speaker or a photo session; group splits and
    within-group tasks use it). ``input_spec`` describes one input as the device will be told; by default a
    picture in [0, 1] of the examples' shape, resized with Lanczos. Equal-size datasets come from :meth:`dense`.
    """

    examples: torch.Tensor
    class_sizes: tuple[int, ...]
    class_names: tuple[str, ...]
    groups: tuple[str, ...]
    input_spec: InputSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_sizes", tuple(int(n) for n in self.class_sizes))
        if self.examples.dtype not in (torch.float32, torch.uint8):
            raise ConfigTypeError(f"examples must be float32 or uint8, got {self.examples.dtype}")
        n = len(self.class_sizes)
        if len(self.class_names) != n or len(self.groups) != n:
            raise ConfigError(f"{n} classes but {len(self.class_names)} class names and {len(self.groups)} groups")
        if any(size < 1 for size in self.class_sizes) or sum(self.class_sizes) != len(self.examples):
            raise ConfigError(f"class sizes must be >= 1 and add up to the {len(self.examples)} examples, got "
                              f"{self.class_sizes[:8]}...")
        if self.input_spec is None:
            object.__setattr__(self, "input_spec", InputSpec(self.image_shape, resize="lanczos"))
        elif self.input_spec.shape != self.image_shape:
            raise InputError(f"the input description's shape {self.input_spec.shape} is not the examples' "
                             f"{self.image_shape}")

    @classmethod
    def dense(cls, images: torch.Tensor, class_names: tuple[str, ...], groups: tuple[str, ...],
              input_spec: InputSpec | None = None) -> "ClassDataset":
        """A dataset of equal-size classes from ``images`` of shape ``(n_classes, per_class, *shape)``."""
        if images.ndim < 3:
            raise ConfigError(f"images must have shape (n_classes, per_class, *shape), got {tuple(images.shape)}")
        return cls(images.flatten(0, 1), (images.shape[1],) * images.shape[0], class_names, groups, input_spec)

    @property
    def n_classes(self) -> int:
        return len(self.class_sizes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.examples.shape[1:])

    @cached_property
    def starts(self) -> torch.Tensor:
        """Index in ``examples`` of each class's first example (computed once per dataset)."""
        sizes = torch.tensor(self.class_sizes)
        return torch.cumsum(sizes, 0) - sizes

    @property
    def labels(self) -> torch.Tensor:
        """The class of each example (int64)."""
        return torch.arange(self.n_classes).repeat_interleave(torch.tensor(self.class_sizes))

    @property
    def images(self) -> torch.Tensor:
        """Equal-size datasets only: every example decoded, ``(n_classes, per_class, *shape)``."""
        if len(set(self.class_sizes)) != 1:
            raise ConfigError("images is for datasets whose classes are the same size: use examples and class_sizes")
        return self.decode(self.examples).view(self.n_classes, self.class_sizes[0], *self.image_shape)

    def class_examples(self, c: int) -> torch.Tensor:
        """The stored examples of class ``c`` (not decoded)."""
        start = int(self.starts[c])
        return self.examples[start: start + self.class_sizes[c]]

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored examples as float32 model inputs: uint8 pixels scaled to the value range and normalised."""
        if stored.dtype == torch.float32:
            return stored
        low, high = self.input_spec.value_range
        values = low + stored.to(torch.float32) * ((high - low) / 255.0)
        if self.input_spec.mean is not None:
            shape = (-1,) + (1,) * (len(self.image_shape) - 1)
            values = (values - torch.tensor(self.input_spec.mean).view(shape)) / torch.tensor(self.input_spec.std).view(shape)
        return values

    def select_groups(self, names: list[str] | tuple[str, ...]) -> "ClassDataset":
        """The classes whose group is in ``names``; an unknown name is an error."""
        unknown = sorted(set(names) - set(self.groups))
        if unknown:
            raise ConfigError(f"unknown groups {unknown}; known: {sorted(set(self.groups))}")
        return self.take([i for i, g in enumerate(self.groups) if g in set(names)])

    def with_rotations(self, quarter_turns: tuple[int, ...] = (0, 1, 2, 3)) -> "ClassDataset":
        """Each class rotated by 90 degrees x ``quarter_turns`` becomes a class of its own (for characters)."""
        examples = torch.cat([torch.rot90(self.examples, k, dims=(-2, -1)) for k in quarter_turns])
        names = tuple(f"{n}@rot{90 * k}" for k in quarter_turns for n in self.class_names)
        return replace(self, examples=examples.contiguous(), class_sizes=self.class_sizes * len(quarter_turns),
                       class_names=names, groups=self.groups * len(quarter_turns))

    def take(self, classes: list[int]) -> "ClassDataset":
        """The dataset of classes ``classes`` (indices, in that order)."""
        starts = self.starts.tolist()
        rows = [i for c in classes for i in range(starts[c], starts[c] + self.class_sizes[c])]
        return replace(self, examples=self.examples[rows].contiguous(),
                       class_sizes=tuple(self.class_sizes[c] for c in classes),
                       class_names=tuple(self.class_names[c] for c in classes),
                       groups=tuple(self.groups[c] for c in classes))


class TaskBatch(NamedTuple):
    """Support and query sets; tasks batched along dimension 0 when sampled as a meta-batch.

    Classification: ``support_x`` (tasks, ways * shots, C, H, W), class-major (all of label 0
    first), ``support_y`` (tasks, ways * shots) int64 labels in ``[0, ways)``, permuted per task;
    ``query_x`` / ``query_y`` likewise. Regression: targets are float tensors instead of labels.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


class SeededSampler:
    """Base of task samplers: draws tasks from explicit ``torch.Generator``s, so every task is reproducible.

    :meth:`sample` continues one stream (its state can be saved); :meth:`tasks` gives task ``i`` of
    meta-batch ``t`` from its own generator seeded by ``(seed, t, i)``, so a meta-batch is the same set of
    tasks however many processes share it out. Subclasses implement :meth:`draw`.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``n_tasks`` tasks stacked along dimension 0, drawn from ``generator``."""
        raise NotImplementedError

    def sample(self, meta_batch_size: int) -> TaskBatch:
        """The next ``meta_batch_size`` tasks of this sampler's stream."""
        return self.draw(meta_batch_size, self.generator)

    def tasks(self, iteration: int, indices: range) -> TaskBatch:
        """Tasks ``indices`` of meta-batch ``iteration``, each drawn from its own ``(seed, iteration, i)`` generator."""
        parts = [self.draw(1, task_generator(self.seed, iteration, i)) for i in indices]
        return TaskBatch(*(torch.cat(column) for column in zip(*parts)))

    def __iter__(self) -> Iterator[TaskBatch]:
        """Single tasks (no task dimension), forever, from the same stream as :meth:`sample`."""
        while True:
            yield TaskBatch(*(t[0] for t in self.sample(1)))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream's random state, so that a resumed stream continues where it stopped."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


def task_generator(seed: int, iteration: int, index: int, stream: str = "") -> torch.Generator:
    """A generator that depends on nothing but ``(seed, iteration, index)`` (a 63-bit BLAKE2 hash of them);
    another ``stream`` name gives an independent generator for the same task (e.g. its inner mini-batches)."""
    key = f"{seed}/{iteration}/{index}" + (f"/{stream}" if stream else "")
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
