"""edgeadapt.sdk.continual: learning a stream of tasks without forgetting (Reptile fast/slow weights, EWC).

``streams``: rotated MNIST, one task per rotation, and permuted MNIST; ``architectures``: the networks compared; ``meta_controller``:
Reptile's fast and slow weights; ``ewc``: Elastic Weight Consolidation; ``lr_policy``: a task-conditional meta
learning rate; ``memory``: a bounded replay memory (reservoir or class-balanced); ``config``: a method as an outer
rule, a regulariser and a memory, and every setting of a run; ``runner``: a
run through a stream on the SDK's run loop; ``metrics``: accuracy matrix, forgetting,
backward and forward transfer;
``search``: Optuna hyperparameter search; ``recipes``: each method's tuned settings (the defaults of
``edgeadapt continual``, in ``edgeadapt.cli.continual``).
"""

from .architectures import ARCHITECTURES, continual_model
from .ewc import EWC
from .lr_policy import MetaLRPolicy
from .memory import ReplayMemory
from .meta_controller import ControllerConfig, MetaController
from .metrics import accuracy, average_accuracy, backward_transfer, few_shot_accuracy, forgetting, forward_transfer
from .config import METHODS, ContinualConfig
from .runner import ContinualRun
from .streams import ROTATIONS, Task, permuted_mnist, rotated_mnist

__all__ = [
    "ARCHITECTURES", "ContinualConfig", "ContinualRun", "ControllerConfig", "EWC", "METHODS", "MetaController",
    "MetaLRPolicy", "ROTATIONS", "ReplayMemory", "Task", "accuracy", "average_accuracy", "backward_transfer",
    "continual_model", "few_shot_accuracy", "forgetting", "forward_transfer", "permuted_mnist", "rotated_mnist",
]
