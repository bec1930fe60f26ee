"""The exceptions of the artifact format and the runtime: one base class, and input errors that are also
ValueError / TypeError. They live in the format layer, which imports nothing else of edgeadapt;
``edgeadapt.runtime.errors`` is where users import them from."""


class EdgeAdaptError(Exception):
    """Base of every error raised by edgeadapt.runtime."""


class InputError(EdgeAdaptError, ValueError):
    """An input has the wrong shape, non-finite values, too few or too many classes or examples."""


class InputTypeError(EdgeAdaptError, TypeError):
    """An input has the wrong type or dtype."""


class ArtifactError(EdgeAdaptError):
    """An artifact or saved state is missing, corrupt, tampered with, or of an unknown format."""


class StorageError(EdgeAdaptError, OSError):
    """A file could not be written: the disk is full, the location is read-only or not permitted, a folder is in the
    way, or a name is too long. The operating system's error is chained; any previous file is untouched."""


class AdaptationError(EdgeAdaptError):
    """Adaptation diverged: the adapted parameters are not finite (lower the learning rate or check the data)."""


class SelfTestError(EdgeAdaptError):
    """This device's adaptation differs from what PyTorch computed at export time by more than the tolerance."""


class EngineError(EdgeAdaptError):
    """onnxruntime or ExecuTorch failed while running a program (the engine's own error is chained)."""


class PredictionError(EdgeAdaptError):
    """The model produced probabilities that are not finite (NaN or infinite): no prediction is made from them."""


class InputWarning(UserWarning):
    """Inputs that are valid but look wrong for this model: inverted polarity, or uint8 images holding only 0 and 1."""


class MissingExtraError(EdgeAdaptError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
