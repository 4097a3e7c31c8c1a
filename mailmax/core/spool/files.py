"""The spool's file operations: writing and syncing files, and reusing those of finished messages.

Shared by the writer (:mod:`mailmax.core.spool.writer`) and the spool
(:mod:`mailmax.core.spool.spool`):
:func:`write_file` writes a new file (into a recycled inode when :class:`FreeFiles` has one),
:func:`fsync_dir` and :func:`sync_filesystem` make changes durable, :func:`remove_messages`
puts the files of finished messages back into ``free/``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

#: fdatasync where there is one.
fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
#: Most buffers one writev() call takes (Linux IOV_MAX).
_IOV_MAX = 1024
#: Files kept in free/ for reuse, and the largest one kept (bigger ones are unlinked).
FREE_FILES = 256
FREE_FILE_MAX_BYTES = 64 * 1024
#: How often a helper looks for files the server put in free/ when it has none.
FREE_RESCAN_SECONDS = 0.2
#: How a group commit makes its files durable: ``files`` (fsync each file and directory) or
#: ``filesystem`` (``syncfs`` the queue's file system, once per batch when busy).
SYNC_MODES = ("files", "filesystem")
_libc_syncfs: Any = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def syncfs_available() -> bool:
    """True where :func:`sync_filesystem` works (Linux)."""
    return _libc_syncfs is not None


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Write every pending change of the file system holding ``path`` to stable storage
    (syncfs(2)); OSError where that fails or does not exist."""
    if _libc_syncfs is None:
        raise OSError(errno.ENOSYS, "syncfs is not available here")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc_syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (its entries are durable afterwards)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink(path: str | os.PathLike[str]) -> None:
    """Remove a file of ours; a missing one or something else in its place is left alone."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(path)


def write_chunks(fd: int, chunks: Sequence[bytes]) -> None:
    """Write every chunk to ``fd`` in order, with as few system calls as possible."""
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start : start + _IOV_MAX]
        written = os.writev(fd, group)
        expected = sum(len(chunk) for chunk in group)
        if written < expected:  # a short write: finish the rest plainly
            rest = memoryview(b"".join(group))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]


class FreeFiles:
    """Small files of finished messages, kept in ``free/`` to be overwritten by new ones.

    Like a database recycling its log segments: on ext4 without a journal, creating an inode
    scans past every recently deleted inode of its group, the largest kernel cost of a queued
    message. Exactly one process takes files from ``free/`` (``taker=True``); another may put
    files there, and the taker finds them by looking again when it has none left.
    """

    def __init__(self, directory: str, *, taker: bool, rescan: bool = False) -> None:
        self.directory = directory
        self.taker = taker
        self.rescan = rescan
        self._names: list[str] = []  # the most recently freed last
        self._handed: set[str] = set()  # found by a rescan and handed out (maybe still there)
        self._lock = threading.Lock()
        self._counter = 0
        self._prefix = f"{time.time_ns():x}-{os.getpid()}"
        self._scanned = 0.0
        self._released = 0

    def load(self) -> None:
        """Take stock of free/ at start; unlink what is over the limit."""
        names = self._scan()
        for name in names[FREE_FILES:]:
            unlink(os.path.join(self.directory, name))
        with self._lock:
            self._names = names[:FREE_FILES] if self.taker else []
            self._handed = set(self._names)
            self._released = min(len(names), FREE_FILES)

    def _scan(self) -> list[str]:
        return [e.name for e in os.scandir(self.directory) if e.is_file(follow_symlinks=False)]

    def take(self, path: str) -> int | None:
        """Give a free file the name ``path`` (a new name: nothing may be there) and open it
        for writing; None when there is none (or this process does not take files).

        One atomic rename: when two takers pick the same free file (a rescan can list a file
        that is being released), one gets it and the other moves on to the next.
        """
        if not self.taker:
            return None
        while True:
            name = self._pop()
            if name is None:
                return None
            source = os.path.join(self.directory, name)
            try:
                os.rename(source, path)
            except FileNotFoundError:
                if os.path.isdir(os.path.dirname(path)):
                    continue  # taken or removed behind our back: try the next one
                self._push(name)
                raise
            except OSError:
                self._push(name)
                raise
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            if os.fstat(fd).st_nlink == 1:
                return fd
            os.close(fd)  # linked elsewhere meanwhile (by hand?): not ours to overwrite
            os.unlink(path)

    def _pop(self) -> str | None:
        with self._lock:
            if not self._names and self.rescan:
                now = time.monotonic()
                if now - self._scanned >= FREE_RESCAN_SECONDS:
                    self._scanned = now
                    present = self._scan()
                    self._handed &= set(present)
                    self._names = [n for n in present if n not in self._handed]
                    self._handed.update(self._names)
            return self._names.pop() if self._names else None

    def _push(self, name: str) -> None:
        with self._lock:
            self._names.append(name)

    def release(self, path: str) -> None:
        """A finished file: keep it for reuse when it is small and there is room, else unlink
        it. A missing file is fine."""
        with self._lock:
            self._counter += 1
            name = f"{self._prefix}-{self._counter}"
            if self.taker:
                room = len(self._names) < FREE_FILES
            else:  # the taker uses them up; count what is there now and then
                if self._released >= FREE_FILES:
                    self._released = len(self._scan())
                room = self._released < FREE_FILES
        try:
            info = os.stat(path)
            # A file also linked elsewhere (a Maildir holds it) must never be overwritten.
            if room and info.st_size <= FREE_FILE_MAX_BYTES and info.st_nlink == 1:
                os.rename(path, os.path.join(self.directory, name))
                with self._lock:
                    if self.taker:
                        self._names.append(name)
                    self._released += 1
                return
        except (FileNotFoundError, IsADirectoryError):
            return
        unlink(path)


def remove_messages(
    directory: str, queue_ids: Sequence[str], *, fsync: bool, free: FreeFiles
) -> None:
    """Remove finished messages of the spool in ``directory`` with one directory fsync.

    The envelopes go first: a crash before the fsync leaves a message queued, whose next
    delivery finds the copies already made. Their files go to ``free`` for reuse.
    """
    msg, env = os.path.join(directory, "msg"), os.path.join(directory, "env")
    for queue_id in queue_ids:
        free.release(os.path.join(env, queue_id + ".json"))
    if fsync and queue_ids:
        fsync_dir(env)
    for queue_id in queue_ids:
        free.release(os.path.join(msg, queue_id))


def write_file(path: str, chunks: Sequence[bytes], *, fsync: bool, free: FreeFiles) -> None:
    """Write a new file at ``path`` (which must not exist) and fdatasync it, reusing a free
    file if there is one."""
    fd = free.take(path)
    recycled = fd is not None
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        write_chunks(fd, chunks)
        if recycled:
            os.ftruncate(fd, sum(len(chunk) for chunk in chunks))
        if fsync:
            fdatasync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle_unanswered(
    directory: str, queue_ids: Sequence[str], *, fsync: bool
) -> dict[str, OSError | None]:
    """Settle the messages a writer process was committing when it died, before any is
    answered (blocking; the dead writer can no longer touch them).

    A message whose two files are both in place is complete (each file is renamed into
    place only once fully written, the message before its envelope): its files and the
    directories are fsynced and it maps to None (committed). Every other one is removed,
    its tmp files too, and the removal is made durable before it maps to its error; so it
    can never be delivered later, not even after a crash. When the directories cannot be
    synced, the complete ones are removed as well and fail too.
    """
    msg, env, tmp = (os.path.join(directory, sub) for sub in ("msg", "env", "tmp"))
    results: dict[str, OSError | None] = {}
    kept: list[str] = []

    def remove(queue_id: str) -> None:
        unlink(os.path.join(env, queue_id + ".json"))  # the envelope first: no half stays queued
        unlink(os.path.join(msg, queue_id))
        unlink(os.path.join(tmp, queue_id + ".msg"))
        unlink(os.path.join(tmp, queue_id + ".env"))

    for queue_id in queue_ids:
        message, envelope = os.path.join(msg, queue_id), os.path.join(env, queue_id + ".json")
        if os.path.isfile(message) and os.path.isfile(envelope):
            try:
                if fsync:
                    _fsync_file(message)
                    _fsync_file(envelope)
                kept.append(queue_id)
                continue
            except OSError as exc:
                results[queue_id] = exc
        else:
            results[queue_id] = OSError(
                errno.EIO, "the spool writer stopped before the message was committed"
            )
        remove(queue_id)
    if fsync and queue_ids:
        try:
            fsync_dir(env)
            fsync_dir(msg)
        except OSError as exc:
            for queue_id in kept:
                remove(queue_id)
                results[queue_id] = exc
            kept = []
            with contextlib.suppress(OSError):
                fsync_dir(env)
                fsync_dir(msg)
    for queue_id in kept:
        results[queue_id] = None
    return results
