"""The class-indexed image dataset that every few-shot task is drawn from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Iterator, NamedTuple

import torch

from edgeadapt.runtime.format.errors import InputError
from edgeadapt.runtime.format.inputs import InputSpec

from ..errors import ConfigError, ConfigTypeError

# Drawings of the built-in datasets (Omniglot, glyphs, MNIST): strokes 1.0 on 0.0, resized with Lanczos.
STROKES = {"modality": "strokes", "polarity": "ink_high", "resize": "lanczos"}


@dataclass(frozen=True)
class ClassDataset:
    """Images grouped by class: ``images[c, d]`` is drawing ``d`` of class ``c``.

    ``images`` is float32 of shape ``(n_classes, n_drawings, channels, height, width)``;
    ``class_names`` and ``alphabets`` hold one entry per class (``alphabets`` names the
    group a class belongs to, which is what splits are made by). ``input_spec`` describes one image (what it is,
    its range and normalisation) as the device will be told; by default a picture in [0, 1] of the images'
    shape, resized with Lanczos: datasets of drawings or spectrograms say so.
    """

    images: torch.Tensor
    class_names: tuple[str, ...]
    alphabets: tuple[str, ...]
    input_spec: InputSpec | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 5:
            raise ConfigError(
                f"images must have shape (n_classes, n_drawings, C, H, W), got {tuple(self.images.shape)}"
            )
        if self.images.dtype != torch.float32:
            raise ConfigTypeError(f"images must be float32, got {self.images.dtype}")
        n = self.images.shape[0]
        if len(self.class_names) != n or len(self.alphabets) != n:
            raise ConfigError(
                f"{n} classes of images but {len(self.class_names)} class names "
                f"and {len(self.alphabets)} alphabet names"
            )
        if self.input_spec is None:
            object.__setattr__(self, "input_spec", InputSpec(self.image_shape, resize="lanczos"))
        elif self.input_spec.shape != self.image_shape:
            raise InputError(f"the input description's shape {self.input_spec.shape} is not the images' "
                             f"{self.image_shape}")

    @property
    def n_classes(self) -> int:
        return self.images.shape[0]

    @property
    def n_drawings(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[2:])  # type: ignore[return-value]

    def select_alphabets(self, names: list[str] | tuple[str, ...]) -> "ClassDataset":
        """The classes whose alphabet is in ``names``; an unknown name is an error."""
        unknown = sorted(set(names) - set(self.alphabets))
        if unknown:
            raise ConfigError(f"unknown alphabets {unknown}; known: {sorted(set(self.alphabets))}")
        keep = [i for i, a in enumerate(self.alphabets) if a in set(names)]
        return self._take(keep)

    def with_rotations(self, quarter_turns: tuple[int, ...] = (0, 1, 2, 3)) -> "ClassDataset":
        """Each class rotated by 90 degrees x ``quarter_turns`` becomes a class of its own."""
        images = torch.cat([torch.rot90(self.images, k, dims=(-2, -1)) for k in quarter_turns])
        names = tuple(f"{n}@rot{90 * k}" for k in quarter_turns for n in self.class_names)
        alphabets = tuple(a for _ in quarter_turns for a in self.alphabets)
        return replace(self, images=images.contiguous(), class_names=names, alphabets=alphabets)

    def _take(self, indices: list[int]) -> "ClassDataset":
        return replace(self, images=self.images[indices].contiguous(),
                       class_names=tuple(self.class_names[i] for i in indices),
                       alphabets=tuple(self.alphabets[i] for i in indices))


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
