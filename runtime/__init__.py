"""edgeadapt.runtime: adapt an exported model on device with numpy and onnxruntime only (no torch).

``format/`` holds the artifact format shared with ``edgeadapt.export``; ``preprocess`` turns raw images into
what a model expects; ``state`` is the saved-state format of :meth:`AdaptedLearner.save`.
"""

from .errors import (AdaptationError, ArtifactError, EdgeAdaptError, EngineError, InputError, InputTypeError,
                     InputWarning, PredictionError, SelfTestError)
from .learner import AdaptedLearner, Learner, load

__all__ = ["AdaptationError", "AdaptedLearner", "ArtifactError", "EdgeAdaptError", "EngineError", "InputError",
           "InputTypeError", "InputWarning", "Learner", "PredictionError", "SelfTestError", "load"]
