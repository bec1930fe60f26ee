"""Which examples a bounded memory keeps: one definition for the workstation's replay memory
(:mod:`edgeadapt.sdk.continual.memory`) and the device's stored support set (:meth:`AdaptedLearner.update`).

``POLICIES`` fill one memory of ``capacity`` examples (training's replay memory); ``KEEP_POLICIES`` choose, per
class, the at most ``max_shots`` examples the device keeps (``newest``: the most recent; ``reservoir``: the
reservoir policy below, per class). Examples are offered one at a time, in the order they arrive; a policy says where each goes (a slot of the memory,
replacing what is there when it is full) or that it is dropped. Randomness comes from the caller's
``numpy.random.Generator``, so a run that saves the generator's state resumes exactly.

- ``reservoir``: uniform reservoir sampling (Vitter's algorithm R): after ``n`` offers every one of them is in the
  memory with the same probability ``capacity / n``.
- ``balanced``: class-balanced reservoir sampling (Chrysakis & Moens, ICML 2020, "Online continual learning from
  imbalanced data"): while there is room, keep; when full, an example of a class that is not among the largest
  in memory replaces a random example of a largest class; one of a largest class is kept with probability
  (its class's examples in memory) / (its class's examples offered), replacing a random example of its own class.
  Every class ends with a fair share, and within a class the kept examples are a uniform sample.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# (labels in memory, capacity, the offered example's label, examples offered before it, of its class offered
# before it, rng) -> the slot it takes (len(stored) appends), or None to drop it
Policy = Callable[[np.ndarray, int, int, int, int, np.random.Generator], "int | None"]


def reservoir(stored: np.ndarray, capacity: int, label: int, seen: int, seen_of_class: int,
              rng: np.random.Generator) -> int | None:
    """The slot of the next offered example under uniform reservoir sampling."""
    if len(stored) < capacity:
        return len(stored)
    slot = int(rng.integers(0, seen + 1))
    return slot if slot < capacity else None


def balanced(stored: np.ndarray, capacity: int, label: int, seen: int, seen_of_class: int,
             rng: np.random.Generator) -> int | None:
    """The slot of the next offered example under class-balanced reservoir sampling."""
    if len(stored) < capacity:
        return len(stored)
    classes, counts = np.unique(stored, return_counts=True)
    largest = classes[counts == counts.max()]
    if label not in largest:
        victims = np.flatnonzero(np.isin(stored, largest))
        return int(victims[rng.integers(0, len(victims))])
    kept = int(counts[classes == label][0])
    if rng.random() * (seen_of_class + 1) >= kept:
        return None
    own = np.flatnonzero(stored == label)
    return int(own[rng.integers(0, len(own))])


POLICIES: dict[str, Policy] = {"reservoir": reservoir, "balanced": balanced}


# The device's stored support set (AdaptedLearner.update): at most max_shots examples per class.


def keep_newest(labels: np.ndarray, stored: int, offered: np.ndarray, max_shots: int,
                rng: np.random.Generator) -> np.ndarray:
    """The most recent ``max_shots`` examples of each class."""
    return np.concatenate([np.flatnonzero(labels == k)[-max_shots:] for k in range(len(offered))])


def keep_reservoir(labels: np.ndarray, stored: int, offered: np.ndarray, max_shots: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Per class, reservoir sampling with capacity ``max_shots``: the stored examples are the reservoir after
    ``offered`` examples of the class, and each new one is offered in turn, so the kept ones are a uniform sample of
    every example of the class ever offered."""
    kept = []
    for k in range(len(offered)):
        slots = list(np.flatnonzero(labels[:stored] == k))
        seen = int(offered[k])
        for i in stored + np.flatnonzero(labels[stored:] == k):
            slot = reservoir(labels[slots], max_shots, k, seen, seen, rng)
            if slot == len(slots):
                slots.append(int(i))
            elif slot is not None:
                slots[slot] = int(i)
            seen += 1
        kept += slots
    return np.array(kept, np.int64)


# (labels of the stored then the new examples, how many are stored, per class the examples offered before this
# update, max_shots, rng) -> the indices of the examples to keep, each class's at most max_shots
KeepPolicy = Callable[[np.ndarray, int, np.ndarray, int, np.random.Generator], np.ndarray]
KEEP_POLICIES: dict[str, KeepPolicy] = {"newest": keep_newest, "reservoir": keep_reservoir}
