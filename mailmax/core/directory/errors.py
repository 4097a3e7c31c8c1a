"""Errors raised by the directory: each message says what is wrong and how to fix it."""

from __future__ import annotations


class DirectoryError(ValueError):
    """A directory request cannot be done as asked (bad name, collision, missing record...)."""


class NotFound(DirectoryError):
    """The domain, user, alias or forward named does not exist."""


class AlreadyExists(DirectoryError):
    """The name is already taken (by a domain, a domain alias, a user or a user alias)."""


class DirectoryUnavailable(RuntimeError):
    """The directory database cannot be reached or used right now (a temporary failure)."""
