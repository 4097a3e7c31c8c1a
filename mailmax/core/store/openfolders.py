"""Folders kept open between a session's commands, so that a run of APPENDs (or COPYs) into
one folder opens and closes its index once instead of once per message."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mailmax.core.store.index import INDEX_NAME

if TYPE_CHECKING:
    from mailmax.core.store.folder import Folder
    from mailmax.core.store.mailbox import MailStore

#: Folders one session keeps open at most (the least recently used is closed first).
DEFAULT_LIMIT = 4


def _identity(folder: Folder) -> tuple[int, int] | None:
    """Which index file the folder's name leads to now (None: none there)."""
    try:
        info = os.stat(folder.dir / INDEX_NAME)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class OpenFolders:
    """A few open :class:`Folder` objects of one store (thread-safe, bounded).

    A kept folder is used again only while its name still leads to the same index file: a
    folder renamed, deleted or re-indexed meanwhile is closed and opened afresh.
    """

    def __init__(self, store: MailStore, limit: int = DEFAULT_LIMIT) -> None:
        self.store = store
        self.limit = limit
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[Folder, tuple[int, int] | None]] = OrderedDict()
        self._closed = False

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[Folder]:
        """The open folder ``name`` for the duration of the block (raises what
        :meth:`MailStore.open` raises). Blocking: call it in a thread."""
        with self._lock:
            entry = self._kept.pop(name, None)
        folder = None
        if entry is not None:
            if _identity(entry[0]) == entry[1] and entry[1] is not None:
                folder = entry[0]
            else:
                entry[0].close()
        if folder is None:
            folder = self.store.open(name)
        try:
            yield folder
        finally:
            self._give_back(name, folder)

    def _give_back(self, name: str, folder: Folder) -> None:
        evicted: list[Folder] = []
        with self._lock:
            if self._closed or name in self._kept:
                evicted.append(folder)
            else:
                self._kept[name] = (folder, _identity(folder))
                while len(self._kept) > self.limit:
                    evicted.append(self._kept.popitem(last=False)[1][0])
        for old in evicted:
            old.close()

    def close(self, final: bool = True) -> None:
        """Close every kept folder; with ``final``, also those in use when they are given
        back (without: the next :meth:`use` opens and keeps folders again)."""
        with self._lock:
            self._closed = self._closed or final
            kept = [folder for folder, _ in self._kept.values()]
            self._kept.clear()
        for folder in kept:
            folder.close()
