"""edgeadapt.export: turn a meta-trained checkpoint into an artifact that devices adapt without PyTorch."""

from .artifact import export_artifact

__all__ = ["export_artifact"]
