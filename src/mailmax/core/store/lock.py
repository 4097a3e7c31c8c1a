"""Exclusive mailbox sessions: the POP3 lock file and clearing a ghost lock (S2, A12).

A lock is the file ``mailmax-pop3.lock`` in the Maildir++ root, holding the owner's pid, host,
start time and a random token as JSON. A lock whose pid is dead on this host (or that this very
process does not hold although the pid is ours) is stale and is taken over automatically;
``mailmax user unlock ADDRESS`` removes any lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "mailmax-pop3.lock"


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a mailbox lock."""

    pid: int
    host: str
    since: float
    service: str
    token: str


class MailboxInUse(Exception):
    """Another session holds the mailbox; ``info`` says who (None when unreadable)."""

    def __init__(self, root: Path, info: LockInfo | None) -> None:
        super().__init__(f"mailbox {root} is locked by {info}")
        self.root = root
        self.info = info


class MailboxLock:
    """A held lock; release it with :meth:`release` (or use it as a context manager)."""

    @classmethod
    def acquire(cls, root: Path, service: str = "pop3") -> MailboxLock:
        """Take the lock of the mailbox at ``root``; raises :class:`MailboxInUse`."""
        raise NotImplementedError

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        raise NotImplementedError


def read_lock(root: Path) -> LockInfo | None:
    """The lock on the mailbox at ``root``, or None."""
    raise NotImplementedError


def is_stale(info: LockInfo) -> bool:
    """True when the lock's owner is gone (dead pid on this host)."""
    raise NotImplementedError


def clear_lock(root: Path) -> LockInfo | None:
    """Remove the lock on the mailbox at ``root`` whoever holds it (A12); return what it was."""
    raise NotImplementedError
