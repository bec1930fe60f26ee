"""edgeadapt.sdk.continual: learning a stream of tasks without forgetting (Reptile fast/slow weights, EWC).

``streams``: rotated MNIST, one task per rotation; ``architectures``: the networks compared; ``meta_controller``:
Reptile's fast and slow weights; ``ewc``: Elastic Weight Consolidation; ``lr_policy``: a task-conditional meta
learning rate; ``config``: a method as an outer rule and a regulariser, and every setting of a run; ``runner``: a
run through a stream on the SDK's run loop; ``metrics``: accuracy matrix and forgetting;
``search``: Optuna hyperparameter search; ``recipes``: each method's tuned settings (the defaults of
``edgeadapt continual``, in ``edgeadapt.cli.continual``).
"""

from .architectures import ARCHITECTURES, continual_model
from .ewc import EWC
from .lr_policy import MetaLRPolicy
from .meta_controller import ControllerConfig, MetaController
from .metrics import accuracy, average_accuracy, few_shot_accuracy, forgetting
from .config import METHODS, ContinualConfig
from .runner import ContinualRun
from .streams import ROTATIONS, Task, rotated_mnist

__all__ = [
    "ARCHITECTURES", "ContinualConfig", "ContinualRun", "ControllerConfig", "EWC", "METHODS", "MetaController",
    "MetaLRPolicy", "ROTATIONS", "Task", "accuracy", "average_accuracy", "continual_model", "few_shot_accuracy",
    "forgetting", "rotated_mnist",
]
