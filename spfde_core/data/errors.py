"""Exceptions raised by the data package."""

from __future__ import annotations


class DataSourceError(ValueError):
    """A data source is missing, malformed or unreachable; the message says what to do about it."""


class PreparedDataError(ValueError):
    """A prepared dataset on disk is incomplete, inconsistent or collides with new content."""


class PreparedDataMissing(PreparedDataError, FileNotFoundError):
    """No prepared dataset where one is expected; the message gives the command that makes it."""
