"""The one error type dataset loading raises, so callers can catch bad data separately from bugs."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable, or not in the expected layout."""
