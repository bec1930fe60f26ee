"""Episodic N-way K-shot task sampling, vectorised so that a meta-batch is one gather."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .datasets.base import ClassDataset, SeededSampler, TaskBatch
from .errors import ConfigError
from .inner_loop import PAD_LABEL

__all__ = ["EpisodeSampler", "TaskBatch"]
log = logging.getLogger(__name__)


class EpisodeSampler(SeededSampler):
    """Draws N-way K-shot classification tasks from one split of a :class:`ClassDataset`.

    Each task picks ``ways`` distinct classes and ``shots + query_shots`` distinct examples of
    each (classes may hold any number; those with fewer than that are left out, with a warning); the order in which classes are picked assigns the labels, so label meanings are
    permuted from task to task. Sampling is deterministic given ``seed``, and only touches
    the dataset it was given, so splits can never mix.

    With ``min_ways`` / ``min_shots`` each task has between ``min_ways`` and ``ways`` classes and
    between ``min_shots`` and ``shots`` support examples per class, padded to the full size with
    examples labelled ``PAD_LABEL`` (ignored by the loss), as a deployed artifact pads its tasks.

    With ``within_alphabet`` every task draws its classes from one group, e.g. an alphabet (chosen uniformly among those
    with at least ``ways`` classes): Lake et al.'s harder protocol, where characters look alike.
    """

    loss = "cross_entropy"

    def __init__(self, dataset: ClassDataset, ways: int, shots: int, query_shots: int = 5, seed: int = 0,
                 min_ways: int | None = None, min_shots: int | None = None, within_alphabet: bool = False):
        if ways < 2:
            raise ConfigError(f"ways must be >= 2, got {ways}")
        if shots < 1 or query_shots < 0:
            raise ConfigError(f"shots must be >= 1 and query_shots >= 0, got {shots} and {query_shots}")
        if ways > dataset.n_classes:
            raise ConfigError(f"{ways}-way tasks need {ways} classes, the dataset has {dataset.n_classes}")
        self._sizes = torch.tensor(dataset.class_sizes)
        self._eligible = self._sizes >= shots + query_shots
        if int(self._eligible.sum()) < ways:
            raise ConfigError(f"{ways}-way tasks of shots + query_shots = {shots + query_shots} examples per class "
                              f"need {ways} classes that large; the dataset has {int(self._eligible.sum())} (sizes "
                              f"{min(dataset.class_sizes)}..{max(dataset.class_sizes)})")
        if not bool(self._eligible.all()):
            log.warning("%d of %d classes have fewer than %d examples and are left out of tasks",
                        int((~self._eligible).sum()), dataset.n_classes, shots + query_shots)
        self.min_ways = ways if min_ways is None else min_ways
        self.min_shots = shots if min_shots is None else min_shots
        if not 2 <= self.min_ways <= ways or not 1 <= self.min_shots <= shots:
            raise ConfigError(f"need 2 <= min_ways <= ways and 1 <= min_shots <= shots, got min_ways={min_ways}, "
                             f"ways={ways}, min_shots={min_shots}, shots={shots}")
        self.dataset = dataset
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.within_alphabet = within_alphabet
        self._alphabet_members = _group_members(dataset, ways, self._eligible) if within_alphabet else None
        super().__init__(seed)

    def draw(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``n_tasks`` independent tasks, stacked along dimension 0, drawn from ``generator``."""
        ways, per_class, g = self.ways, self.shots + self.query_shots, generator
        scores = torch.rand(n_tasks, self.dataset.n_classes, generator=g).masked_fill(~self._eligible, -1.0)
        if self._alphabet_members is not None:
            chosen = torch.randint(len(self._alphabet_members), (n_tasks,), generator=g)
            scores = scores.masked_fill(~self._alphabet_members[chosen], -1.0)
        classes = scores.topk(ways, dim=1).indices
        keys = torch.rand(n_tasks, ways, int(self._sizes.max()), generator=g)
        beyond = torch.arange(keys.shape[2]) >= self._sizes[classes][..., None]  # past the end of a smaller class
        drawings = keys.masked_fill(beyond, 2.0).argsort(dim=2)[..., :per_class]
        rows = self.dataset.starts[classes][..., None] + drawings
        images = self.dataset.decode(self.dataset.examples[rows])  # (tasks, ways, per_class, *shape)
        labels = torch.arange(ways).view(1, ways, 1).expand(n_tasks, ways, per_class).clone()
        if (self.min_ways, self.min_shots) != (ways, self.shots):
            task_ways = torch.randint(self.min_ways, ways + 1, (n_tasks, 1, 1), generator=g)
            task_shots = torch.randint(self.min_shots, self.shots + 1, (n_tasks, 1, 1), generator=g)
            slot = torch.arange(per_class).view(1, 1, per_class)
            padding = (labels >= task_ways) | ((slot < self.shots) & (slot >= task_shots))
            labels[padding] = PAD_LABEL
        shape = self.dataset.image_shape
        support, query = images[:, :, : self.shots], images[:, :, self.shots :]
        return TaskBatch(
            support.reshape(n_tasks, ways * self.shots, *shape),
            labels[:, :, : self.shots].reshape(n_tasks, -1),
            query.reshape(n_tasks, ways * self.query_shots, *shape),
            labels[:, :, self.shots :].reshape(n_tasks, -1),
        )

    def over(self, dataset: ClassDataset) -> "EpisodeSampler":
        """The same tasks (same seed, same stream position, same draws) from ``dataset``: another form of this
        sampler's examples, e.g. their frozen-layer outputs (:mod:`~edgeadapt.sdk.frozen_layers`)."""
        if dataset.class_sizes != self.dataset.class_sizes or dataset.groups != self.dataset.groups:
            raise ConfigError("over() takes the same examples in another form: the class sizes and groups differ")
        twin = EpisodeSampler(dataset, self.ways, self.shots, self.query_shots, self.seed, self.min_ways,
                              self.min_shots, self.within_alphabet)
        twin.load_state_dict(self.state_dict())
        return twin

    def describe(self) -> dict[str, Any]:
        """The task distribution, as JSON for checkpoints and metrics."""
        return {"ways": self.ways, "shots": self.shots, "query_shots": self.query_shots,
                "min_ways": self.min_ways, "min_shots": self.min_shots, "classes": self.dataset.n_classes,
                "within_alphabet": self.within_alphabet}


def _group_members(dataset: ClassDataset, ways: int, eligible: torch.Tensor) -> torch.Tensor:
    """(groups, classes) bool: which eligible classes belong to each group that has at least ``ways`` of them."""
    names = sorted(set(dataset.groups))
    members = torch.tensor([[g == name for g in dataset.groups] for name in names]) & eligible
    members = members[members.sum(1) >= ways]
    if len(members) == 0:
        raise ConfigError(f"no group (alphabet) has {ways} classes for within-group tasks")
    return members
