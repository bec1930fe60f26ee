"""edgeadapt.runtime: adapt an exported model on device with numpy and onnxruntime only (no torch).

``learner`` holds the API (:func:`load`, :class:`Learner`, :class:`AdaptedLearner`); ``embeddings`` the features
:meth:`Learner.embed` computes once (:class:`Embeddings`); ``backends`` the engines
(onnxruntime, ExecuTorch), fed verified bytes; ``format/`` the artifact format shared with ``edgeadapt.export``;
``state`` the saved-state format of :meth:`AdaptedLearner.save`; ``labels`` the one rule for labels;
``arguments`` the checks of paths, engine names and thread counts; ``selfcheck`` the export-time reference task;
``memory`` which examples a bounded memory keeps (the stored support set's policies, shared with training);
``preprocess`` turns raw images into what a model expects; ``audio`` turns recordings into log-mel images (as the
spoken-digit models expect); ``errors`` the exceptions, all :class:`EdgeAdaptError`.
"""

from .errors import (AdaptationError, ArtifactError, EdgeAdaptError, EngineError, InputError, InputTypeError,
                     InputWarning, PredictionError, SelfTestError, StorageError)
from .embeddings import Embeddings
from .learner import AdaptedLearner, Learner, load

__all__ = ["AdaptationError", "AdaptedLearner", "ArtifactError", "EdgeAdaptError", "Embeddings", "EngineError", "InputError",
           "InputTypeError", "InputWarning", "Learner", "PredictionError", "SelfTestError", "StorageError", "load"]
