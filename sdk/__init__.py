"""edgeadapt.sdk: pretrain and meta-train few-shot models (Reptile, FOMAML, MAML) in PyTorch.

- ``datasets/``: Omniglot, procedural glyphs, sine regression, MNIST; the data folder, cache and downloads;
- ``algorithms/``: the meta-learning algorithms, one per module; ``continual/``: learning a stream of tasks;
- ``importers/``: weights of models trained elsewhere (a TFLite MobileNet V1) read into these networks;
- ``tasks``: episodic task sampling; ``models``: networks and their registry; ``networks``: ResNet-12 and the
  MobileNets; ``backbones``: the registry of backbones by name, sized for an input; ``inner_loop``, ``scopes`` and
  ``heads``: the one adaptation routine, what it adapts and where its head starts; ``preconditioner``:
  per-parameter inner learning rates from a pretraining run's Adam state; ``minibatches``: which support
  examples each inner step of training sees; ``frozen_layers``: the layers a scope freezes computed once per
  example, not once per task, for training and evaluation;
- ``training``, ``pretraining`` (with ``augment``), ``run_loop``, ``run_state``, ``distributed``: training
  runs, resumable, on one or several processes; ``evaluation``: mean and 95% CI over tasks; ``checkpoint``:
  verified checkpoints; ``sanity``: warnings about results that are not what they seem (training classes met
  again in evaluation, accuracy at chance);
- ``recipes``: the registry of named datasets (``register_dataset``) with their default models and settings;
  ``contract``: the model convention (``features`` + linear ``head``) and its check; ``aliases``: the seeds'
  names (``train_maml``, ``reptile_train``, ``reptile_adapt``); ``errors``: :class:`SDKError` and its
  subclasses, raised for every failure. The command line, ``edgeadapt.cli``, sits above this package.
"""

from .algorithms import ALGORITHMS, FOMAML, MAML, MetaAlgorithm, Reptile, fomaml_gradient, get_algorithm, maml_gradient, reptile_gradient
from .aliases import reptile_adapt, reptile_train, train_maml
from .checkpoint import load_checkpoint, save_checkpoint
from .contract import Backbone, check_backbone
from .errors import CheckpointError, ConfigError, DatasetError, SDKError
from .evaluation import EvalResult, adapted_copy, evaluate
from .inner_loop import InnerLoop
from .models import MLP, Conv4, build_model, register_model
from .networks import MobileNetV1, MobileNetV2, ResNet12
from .tasks import EpisodeSampler, TaskBatch
from .training import MetaConfig, MetaTrainer, meta_train

__all__ = [
    "ALGORITHMS", "FOMAML", "MAML", "MLP", "MobileNetV1", "MobileNetV2", "ResNet12", "CheckpointError", "ConfigError", "Conv4", "DatasetError",
    "EpisodeSampler", "EvalResult", "InnerLoop", "MetaAlgorithm", "MetaConfig", "MetaTrainer", "Reptile",
    "SDKError", "TaskBatch", "build_model", "evaluate", "fomaml_gradient", "get_algorithm", "load_checkpoint",
    "maml_gradient", "meta_train", "register_model", "reptile_adapt", "adapted_copy", "Backbone", "check_backbone", "reptile_gradient", "reptile_train",
    "save_checkpoint", "train_maml",
]
