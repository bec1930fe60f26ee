"""edgeadapt.runtime: adapt an exported model on device with numpy and onnxruntime only (no torch)."""

from .errors import AdaptationError, ArtifactError, EdgeAdaptError, InputError, InputTypeError, SelfTestError
from .learner import AdaptedLearner, Learner, load

__all__ = ["AdaptationError", "AdaptedLearner", "ArtifactError", "EdgeAdaptError", "InputError",
           "InputTypeError", "Learner", "SelfTestError", "load"]
