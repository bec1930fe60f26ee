"""edgeadapt.runtime: adapt an exported model on device with numpy and onnxruntime only (no torch).

``learner`` holds the API (:func:`load`, :class:`Learner`, :class:`AdaptedLearner`); ``backends`` the engines
(onnxruntime, ExecuTorch), fed verified bytes; ``format/`` the artifact format shared with ``edgeadapt.export``;
``state`` the saved-state format of :meth:`AdaptedLearner.save`; ``preprocess`` turns raw images into what a
model expects; ``audio`` turns recordings into log-mel images (as the spoken-digit models expect); ``errors`` the exceptions, all :class:`EdgeAdaptError`.
"""

from .errors import (AdaptationError, ArtifactError, EdgeAdaptError, EngineError, InputError, InputTypeError,
                     InputWarning, PredictionError, SelfTestError)
from .learner import AdaptedLearner, Learner, load

__all__ = ["AdaptationError", "AdaptedLearner", "ArtifactError", "EdgeAdaptError", "EngineError", "InputError",
           "InputTypeError", "InputWarning", "Learner", "PredictionError", "SelfTestError", "load"]
