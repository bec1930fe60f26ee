"""edgeadapt.sdk: meta-train few-shot models (Reptile, FOMAML, MAML) in PyTorch."""

from .algorithms import ALGORITHMS, FOMAML, MAML, MetaAlgorithm, Reptile, fomaml_gradient, get_algorithm, maml_gradient, reptile_gradient
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .evaluation import EvalResult, evaluate, reptile_adapt
from .inner_loop import InnerLoop
from .models import MLP, Conv4, build_model, register_model
from .tasks import EpisodeSampler, TaskBatch
from .training import MetaConfig, MetaTrainer, meta_train, reptile_train, train_maml

__all__ = [
    "ALGORITHMS", "CheckpointError", "Conv4", "EpisodeSampler", "EvalResult", "FOMAML", "InnerLoop", "MAML", "MLP",
    "MetaAlgorithm", "MetaConfig", "MetaTrainer", "Reptile", "TaskBatch", "build_model", "evaluate",
    "fomaml_gradient", "get_algorithm", "meta_train",
    "load_checkpoint", "maml_gradient", "register_model", "reptile_adapt", "reptile_gradient",
    "reptile_train", "save_checkpoint", "train_maml",
]
