"""A POP3 session's maildrop: the locked INBOX as it was at login.

Every method blocks (files, the index); the server calls :meth:`Maildrop.open` and
:meth:`Maildrop.commit` in a worker thread. Message numbers are 1-based positions in the
snapshot taken at login; UIDL strings come from the store's UIDVALIDITY and UID, so they stay
the same across sessions and restarts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from mailmax.core.store.lock import MailboxLock
from mailmax.core.store.mailbox import Folder, MailStore, MessageInfo


class Maildrop:
    """The INBOX of one user, locked for one POP3 session."""

    def __init__(self, lock: MailboxLock, folder: Folder) -> None:
        self._lock = lock
        self.folder = folder
        self.messages: list[MessageInfo] = list(folder.messages())
        self.deleted: set[int] = set()  # 1-based message numbers marked by DELE
        self._uidl_prefix = f"{folder.uidvalidity:08x}"
        self._dir = f"{folder.dir}/"

    @classmethod
    def open(cls, root: Path, *, fsync: bool = True) -> Maildrop:
        """Lock the mailbox at ``root`` and read its INBOX; raises MailboxInUse, StoreError."""
        lock = MailboxLock.acquire(root, "pop3")
        try:
            folder = MailStore(root, fsync=fsync).open("INBOX")
            try:
                return cls(lock, folder)
            except BaseException:
                folder.close()
                raise
        except BaseException:
            lock.release()
            raise

    # ------------------------------------------------------------------ queries
    def get(self, number: int) -> MessageInfo | None:
        """The message numbered ``number`` unless it does not exist or is marked deleted."""
        if 1 <= number <= len(self.messages) and number not in self.deleted:
            return self.messages[number - 1]
        return None

    def exists(self, number: int) -> bool:
        """True when ``number`` names a message of the snapshot (deleted or not)."""
        return 1 <= number <= len(self.messages)

    def live(self) -> list[tuple[int, MessageInfo]]:
        """``(number, message)`` for every message not marked deleted."""
        return [
            (number, info)
            for number, info in enumerate(self.messages, 1)
            if number not in self.deleted
        ]

    def stat(self) -> tuple[int, int]:
        """``(count, octets)`` of the messages not marked deleted."""
        if not self.deleted:
            return len(self.messages), sum(info.size for info in self.messages)
        live = self.live()
        return len(live), sum(info.size for _, info in live)

    def uidl(self, info: MessageInfo) -> str:
        """The unique id of a message: UIDVALIDITY and UID in hex (stable across restarts)."""
        return f"{self._uidl_prefix}{info.uid:08x}"

    def open_message(self, info: MessageInfo) -> BinaryIO:
        """The message file, opened (follows renames made by IMAP sessions meanwhile)."""
        return self.folder.open_file(info.uid)

    def read_small(self, info: MessageInfo, limit: int) -> bytes | None:
        """The bytes of a message of at most ``limit`` bytes, or None when it is bigger.

        The common case reads the file the snapshot names directly; a file renamed or
        removed meanwhile is looked up again (raises MessageGone when it went).
        """
        try:
            fd = os.open(self._dir + info.filename, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            with self.open_message(info) as handle:
                data = handle.read(limit + 1)
            return data if len(data) <= limit else None
        try:
            data = os.read(fd, limit + 1)
            while len(data) <= limit:
                more = os.read(fd, limit + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        return data if len(data) <= limit else None

    # ------------------------------------------------------------------ update state
    def commit(self) -> int:
        """Expunge the messages marked deleted (the UPDATE state); return how many went."""
        uids = [self.messages[n - 1].uid for n in sorted(self.deleted)]
        if not uids:
            return 0
        return len(self.folder.expunge(uids))

    def unlock(self) -> None:
        """Release the lock: another session may open the mailbox (the index stays open)."""
        self._lock.release()

    def close(self) -> None:
        """Close the index and release the lock (if :meth:`unlock` did not already)."""
        try:
            self.folder.close()
        finally:
            self._lock.release()
