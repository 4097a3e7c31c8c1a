"""Making mailbox changes durable with few disk cache flushes (group commit).

On Linux a change is made durable by one ``syncfs`` of the mailbox's file system instead of
fsyncing every message file, directory and index commit. :class:`GroupSync` shares those
syncs: a caller waits for a sync that started after its own change; callers arriving while
one runs share the next one, so many sessions' APPENDs and flag changes cost one flush.
Elsewhere (no ``syncfs``) the store fsyncs each file, directory and index commit.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mailmax.core.spool.files import sync_filesystem, syncfs_available

#: How a store makes changes durable: ``filesystem`` (one shared syncfs per batch of
#: changes), ``files`` (fsync every file, directory and index commit) or ``none`` (tests).
SYNC_MODES = ("filesystem", "files", "none")


def store_sync_mode(spool_sync: str) -> str:
    """The store's sync mode for the ``[spool] sync`` setting (``files`` where no syncfs)."""
    if spool_sync == "files":
        return "files"
    return default_sync_mode(True)


def default_sync_mode(fsync: bool) -> str:
    """The sync mode of a store: ``filesystem`` where syncfs exists, else ``files``."""
    if not fsync:
        return "none"
    return "filesystem" if syncfs_available() else "files"


class GroupSync:
    """The shared syncs of one file system (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0
        self._finished = 0
        self._running = False
        #: sync number -> its error (None when it succeeded), for the callers waiting on it.
        self._results: dict[int, OSError | None] = {}

    def sync(self, path: Path) -> None:
        """Return once everything written before this call to the file system holding
        ``path`` is on stable storage.

        Raises OSError when the sync that covers this call failed.
        """
        with self._cond:
            target = self._started + 1  # a sync that starts after now
            while self._finished < target:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                error: OSError | None = None
                self._cond.release()
                try:
                    sync_filesystem(path)
                except OSError as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._finished = number
                    self._results[number] = error
                    for old in [n for n in self._results if n < number - 256]:
                        del self._results[old]
                    self._cond.notify_all()
            error = self._results.get(target)
        if error is not None:
            raise OSError(error.errno, f"cannot make the mailbox durable: {error.strerror}")


_groups: dict[int, GroupSync] = {}
_groups_lock = threading.Lock()


def group_for(path: Path) -> GroupSync:
    """The :class:`GroupSync` of the file system holding ``path`` (one per device)."""
    device = os.stat(path).st_dev
    with _groups_lock:
        group = _groups.get(device)
        if group is None:
            group = _groups[device] = GroupSync()
        return group
