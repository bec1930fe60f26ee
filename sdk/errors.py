"""The SDK's exceptions: every failure of ``edgeadapt.sdk`` (and of ``edgeadapt.export``, whose
:mod:`edgeadapt.export.errors` refines it) is an :class:`SDKError`.

Each class is also the built-in exception it refines (``ValueError``, ``TypeError``, ``RuntimeError``), so
code that caught those keeps working; the CLI turns any of them into one line on stderr and exit status 2.
"""

from __future__ import annotations


class SDKError(Exception):
    """Base of every error edgeadapt.sdk and edgeadapt.export raise for bad settings, data, files or runs."""


class ConfigError(SDKError, ValueError):
    """A setting is unknown, out of range, or does not fit the model, the data or the run folder."""


class ConfigTypeError(SDKError, TypeError):
    """A value has the wrong type: images of the wrong dtype, a model that cannot be saved."""


class DatasetError(SDKError, ValueError):
    """A dataset file or folder is missing, unreadable, or not in the expected layout; a download failed."""


class CheckpointError(SDKError, ValueError):
    """A checkpoint is missing, incomplete, corrupt, tampered with or of an unknown format."""


class DistributedError(SDKError, RuntimeError):
    """A process group could not be formed: a peer did not arrive, or the rendezvous settings are wrong."""


class DivergedError(SDKError, ValueError):
    """Training diverged: the loss is no longer finite."""
