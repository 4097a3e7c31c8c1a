"""Errors of the mailbox store."""

from __future__ import annotations


class StoreError(Exception):
    """A mailbox operation failed; the message says why."""


class FolderNotFound(StoreError):
    """The folder does not exist."""


class FolderExists(StoreError):
    """A folder with that name already exists."""


class BadFolderName(StoreError, ValueError):
    """The folder name cannot be used (empty level, control characters, too long...)."""


class BadFlag(StoreError, ValueError):
    """A flag or keyword cannot be stored."""


class TooManyKeywords(StoreError):
    """The folder has as many keywords as it may have; no new one can be made."""


class MessageGone(StoreError):
    """The message was expunged (by this or another session) or its file vanished."""


class UidValidityChanged(StoreError):
    """The folder's index was rebuilt under an open session: its UIDs no longer hold."""
