"""The runtime's exceptions (defined in the format layer, :mod:`edgeadapt.runtime.format.errors`, so that the
manifest reader and the atomic writers raise them without importing the runtime)."""

from .format.errors import (
    EdgeAdaptError,
    InputError,
    InputTypeError,
    ArtifactError,
    StorageError,
    AdaptationError,
    SelfTestError,
    EngineError,
    PredictionError,
    InputWarning,
    MissingExtraError,
)

__all__ = [
    "EdgeAdaptError",
    "InputError",
    "InputTypeError",
    "ArtifactError",
    "StorageError",
    "AdaptationError",
    "SelfTestError",
    "EngineError",
    "PredictionError",
    "InputWarning",
    "MissingExtraError",
]
