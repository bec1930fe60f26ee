"""A continual method is an outer rule, a regulariser and a memory: every setting of a run through a stream.

The outer rule moves the weights: ``sgd`` steps them directly; ``reptile`` keeps slow weights that move towards
each inner run's fast weights (:mod:`.meta_controller`). The regulariser holds on to earlier tasks: ``ewc``
penalises moving the weights that mattered to them (:mod:`.ewc`), or none. The memory is a bounded replay memory
of ``memory`` examples in all (:mod:`.memory`), filled from every finished task's examples by ``memory_policy``
(uniform or class-balanced reservoir sampling) and replayed beside every later minibatch (0: no memory);
with ``reptile`` that is Reptile over replay batches, as Meta-Experience Replay runs it. The outer rule and the
regulariser are named by :data:`METHODS` (``sgd``, ``sgd-ewc``, ``reptile``, ``reptile-ewc``); a memory is the
setting ``memory`` beside them, so ``reptile`` with ``memory=1000`` is ``reptile+replay``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeadapt.runtime.memory import POLICIES as MEMORY_POLICIES

from ..errors import ConfigError
from .ewc import FISHERS
from .lr_policy import POLICY_MAX_LR
from .meta_controller import ControllerConfig

OUTER_RULES = ("sgd", "reptile")
REGULARISERS = (None, "ewc")
# The named methods: (outer rule, regulariser).
METHODS = {"sgd": ("sgd", None), "sgd-ewc": ("sgd", "ewc"), "reptile": ("reptile", None),
           "reptile-ewc": ("reptile", "ewc")}


@dataclass(frozen=True)
class ContinualConfig:
    """Every setting of a continual run (stored in checkpoints as ``continual``).

    Args:
        outer: ``sgd`` or ``reptile`` (fast weights from the slow ones, K steps, then the slow update).
        regulariser: ``ewc`` or None.
        memory: the replay memory's capacity in examples, over the whole stream (0: no memory); once it holds
            any, every minibatch of the current task's examples gets ``replay_size`` remembered ones beside it.
        replay_size: remembered examples beside each minibatch (None: as many as ``batch_size``, experience
            replay's usual equal share).
        memory_policy: which examples it keeps (:data:`edgeadapt.runtime.memory.POLICIES`: ``reservoir``,
            ``balanced``); every example of a finished task is offered, in an order fixed by the SDK's seeding.
        distill: with a memory, the weight of matching the network's outputs on replayed examples to those it gave
            when they were offered (mean squared error of the logits, dark experience replay); 0: labels only.
        steps_per_task, batch_size: gradient steps on each task, of minibatches drawn with replacement.
        steps_per_batch: gradient steps each draw of the current task's examples serves, each with its own draw
            from the memory (Meta-Experience Replay's ``s``): a stream seen once still trains ``steps_per_batch``
            times on every example beside different remembered ones. 1: a new draw for every step.
        controller: Reptile's settings (:class:`ControllerConfig`); its ``inner_lr`` is also SGD's rate.
        meta_lr_policy: choose Reptile's alpha_m per outer step with :class:`~.lr_policy.MetaLRPolicy`.
        ewc_lambda, fisher, fisher_samples, online_gamma: EWC's strength, Fisher estimate, its sample size,
            and online EWC's decay (None: one anchor per task).
        replay_per_task: training examples of each task the policy's replay batch keeps.
        eval_every: also score every task every this many gradient steps (0: at the end of each task only).
    """

    outer: str = "sgd"
    regulariser: str | None = None
    memory: int = 0
    memory_policy: str = "reservoir"
    distill: float = 0.0
    steps_per_task: int = 1000
    batch_size: int = 32
    steps_per_batch: int = 1
    replay_size: int | None = None
    controller: ControllerConfig = ControllerConfig()
    meta_lr_policy: bool = False
    ewc_lambda: float = 100.0
    fisher: str = "true"
    fisher_samples: int = 500
    online_gamma: float | None = None
    replay_per_task: int = 100
    eval_every: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.controller, dict):  # as stored in a checkpoint's JSON
            object.__setattr__(self, "controller", ControllerConfig(**self.controller))
        if self.outer not in OUTER_RULES or self.regulariser not in REGULARISERS:
            raise ConfigError(f"outer must be one of {OUTER_RULES} and regulariser one of {REGULARISERS}, got "
                              f"{self.outer!r} and {self.regulariser!r}")
        if self.memory_policy not in MEMORY_POLICIES:
            raise ConfigError(f"memory_policy must be one of {sorted(MEMORY_POLICIES)}, got {self.memory_policy!r}")
        if self.fisher not in FISHERS:
            raise ConfigError(f"fisher must be one of {FISHERS}, got {self.fisher!r}")
        if min(self.steps_per_task, self.batch_size, self.steps_per_batch, self.fisher_samples,
               self.replay_per_task) < 1:
            raise ConfigError("steps_per_task, batch_size, steps_per_batch, fisher_samples and replay_per_task must "
                              "be >= 1")
        if self.distill < 0 or (self.distill and not self.memory):
            raise ConfigError(f"distill needs a memory and must be >= 0, got {self.distill} with memory {self.memory}")
        if self.memory < 0 or (self.replay_size is not None and self.replay_size < 1):
            raise ConfigError(f"memory must be >= 0 and replay_size >= 1 (or None), got {self.memory} and "
                              f"{self.replay_size}")
        meta_lr = self.controller.meta_lr
        if self.meta_lr_policy and not (self.reptile and 0 < meta_lr < POLICY_MAX_LR):
            raise ConfigError(f"the meta learning-rate policy needs a Reptile method and a meta_lr (its starting "
                              f"value) in (0, {POLICY_MAX_LR}), got {self.method} with {meta_lr}")
        if not self.reptile and self.controller.inner_optimizer != "sgd":
            raise ConfigError("the SGD methods step with plain SGD; --inner-optimizer applies to Reptile only")

    @classmethod
    def of(cls, method: str, **settings: Any) -> ContinualConfig:
        """The configuration of the named ``method`` (one of :data:`METHODS`) with ``settings``."""
        if method not in METHODS:
            raise ConfigError(f"method must be one of {tuple(METHODS)}, got {method!r}")
        outer, regulariser = METHODS[method]
        return cls(outer=outer, regulariser=regulariser, **settings)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ContinualConfig:
        """A configuration as a checkpoint stores it (one written before outer rules names its ``method``)."""
        document = dict(document)
        if "method" in document:
            return cls.of(document.pop("method"), **document)
        return cls(**document)

    def replace(self, **changes: Any) -> ContinualConfig:
        """A copy with ``changes``, which may name this config's fields or the controller's (inner_lr, ...)."""
        inner = {k: changes.pop(k) for k in list(changes) if k in ControllerConfig.__dataclass_fields__}
        return dataclasses.replace(self, controller=dataclasses.replace(self.controller, **inner), **changes)

    @property
    def method(self) -> str:
        """The method's name: the outer rule, ``+replay`` with a memory, ``+ewc`` with EWC (``reptile+replay+ewc``;
        without a memory the named methods' spelling, ``reptile-ewc``)."""
        if not self.memory:
            return self.outer + (f"-{self.regulariser}" if self.regulariser else "")
        return self.outer + "+replay" + (f"+{self.regulariser}" if self.regulariser else "")

    @property
    def reptile(self) -> bool:
        return self.outer == "reptile"

    @property
    def ewc(self) -> bool:
        return self.regulariser == "ewc"

    @property
    def steps_per_update(self) -> int:
        """Gradient steps in one update: K x meta_batch for Reptile, 1 for SGD."""
        return self.controller.inner_steps * self.controller.meta_batch if self.reptile else 1

    @property
    def updates_per_task(self) -> int:
        """Updates on each task: ``steps_per_task`` rounded up to whole updates."""
        return -(-self.steps_per_task // self.steps_per_update)
