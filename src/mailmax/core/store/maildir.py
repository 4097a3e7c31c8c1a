"""Maildir++ mailboxes: atomic, idempotent delivery and disk usage (A5).

A mailbox root holds ``cur/``, ``new/`` and ``tmp/`` (the INBOX); each folder is a directory
``.Name`` (hierarchy separated by dots: ``.Archive.2024``) with its own ``cur/new/tmp`` and an
empty ``maildirfolder`` file.
"""

from __future__ import annotations

import errno
from pathlib import Path


class MaildirError(OSError):
    """A Maildir operation failed."""


class OverQuota(MaildirError):
    """The message does not fit in the mailbox's disk limit."""

    def __init__(self, usage: int, size: int, quota: int) -> None:
        super().__init__(errno.EDQUOT, f"mailbox full: {usage} + {size} bytes > {quota} bytes")
        self.usage = usage
        self.size = size
        self.quota = quota


def ensure_maildir(root: Path, folder: str = "INBOX") -> Path:
    """Create ``folder`` (with ``cur/new/tmp``) under ``root`` if needed; return its path."""
    raise NotImplementedError


def deliver(
    root: Path,
    folder: str,
    source: Path | bytes,
    unique: str,
    *,
    fsync: bool = True,
    quota_bytes: int = 0,
) -> Path:
    """Store ``source`` in ``folder`` atomically, at most once per ``unique``; return its path."""
    raise NotImplementedError


def usage_bytes(root: Path) -> int:
    """Bytes used by every message in every folder of the mailbox at ``root``."""
    raise NotImplementedError
