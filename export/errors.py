"""The exporter's exceptions: SDK errors (the CLI reports them in one line) raised while making an artifact."""

from __future__ import annotations

from edgeadapt.sdk.errors import SDKError


class ExportError(SDKError, RuntimeError):
    """Exporting failed: a converter or lowering step did not produce a valid program."""


class UnsupportedExportError(ExportError, NotImplementedError):
    """The model uses an operation that cannot be exported with its gradient."""
