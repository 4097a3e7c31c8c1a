"""Exclusive mailbox sessions: the POP3 lock and clearing a ghost lock.

The lock is the file ``mailmax-pop3.lock`` in the Maildir++ root, holding the owner's pid,
host, start time and service as JSON, with an exclusive ``flock`` held on it for the whole
session. When the owning process dies the kernel drops the ``flock``, so a lock left behind by
a crash is stale at once and the next login takes it over. A session that hangs inside a live
server keeps its lock; ``mailmax user unlock ADDRESS`` (:func:`clear_lock`) removes the file so
the next login succeeds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "mailmax-pop3.lock"


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds (or last held) a mailbox lock."""

    pid: int
    host: str
    since: float
    service: str

    def describe(self) -> str:
        """A short human description: ``pop3 session of pid 123 on host since 12:00:00``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.service} session of pid {self.pid} on {self.host} since {when}"


class MailboxInUse(Exception):
    """Another session holds the mailbox; ``info`` says who (None when unreadable)."""

    def __init__(self, root: Path, info: LockInfo | None) -> None:
        who = info.describe() if info else "another session"
        super().__init__(f"mailbox {root} is in use by {who}")
        self.root = root
        self.info = info


class MailboxLock:
    """A held lock; release it with :meth:`release` (or use it as a context manager)."""

    def __init__(self, root: Path, fd: int, info: LockInfo) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self.info = info
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path, service: str = "pop3") -> MailboxLock:
        """Take the lock of the mailbox at ``root``; raises :class:`MailboxInUse`."""
        root = Path(root)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = root / LOCK_NAME
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise MailboxInUse(root, read_lock(root)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the file was removed or replaced while we waited for it
                os.close(fd)
                continue
            info = LockInfo(os.getpid(), socket.gethostname(), time.time(), service)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(info)).encode() + b"\n", 0)
            return cls(root, fd, info)
        raise MailboxInUse(root, read_lock(root))

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file (when it is still ours) and drop the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> MailboxLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock(root: Path) -> LockInfo | None:
    """What the lock file of the mailbox at ``root`` says, or None (no file, unreadable)."""
    try:
        data = json.loads((Path(root) / LOCK_NAME).read_bytes() or b"null")
        return LockInfo(
            int(data["pid"]), str(data["host"]), float(data["since"]), str(data["service"])
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def holder(root: Path) -> LockInfo | None:
    """Who holds the mailbox right now: None when the lock is free or stale."""
    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_lock(root) or LockInfo(0, "?", 0.0, "unknown")
    finally:
        os.close(fd)
    return None


def is_stale(info: LockInfo) -> bool:
    """True when the lock's owner is gone (a dead pid on this host)."""
    if info.host != socket.gethostname():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clear_lock(root: Path) -> LockInfo | None:
    """Remove the lock of the mailbox at ``root`` whoever holds it; return what it said.

    Returns None when there was no lock file. A session still running keeps working, but no
    longer keeps others out.
    """
    info = read_lock(root)
    try:
        (Path(root) / LOCK_NAME).unlink()
    except FileNotFoundError:
        return None
    return info or LockInfo(0, "?", 0.0, "unknown")
