"""MailStore and Folder: one user's Maildir++ mailbox with a persistent per-folder index (S3, S2).

Every folder keeps a SQLite index (``mailmax.index``, WAL mode) beside its ``cur/new/tmp``. The
index holds UIDs, UIDVALIDITY, flags, keywords, sizes and arrival times, so opening a large
folder reads a few rows instead of every message. The Maildir stays the truth: messages that
appear, vanish or change flags on disk (deliveries, other tools) are picked up by
:meth:`Folder.refresh`, which costs two ``stat`` calls when nothing changed.

Folder names are IMAP-style with ``/`` as the hierarchy separator ("INBOX", "Sent",
"Archive/2024"); see :mod:`mailmax.core.store.names` for the on-disk form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

FlagMode = Literal["replace", "add", "remove"]

#: IMAP system flags the store keeps in the Maildir file name, with their info letters.
SYSTEM_FLAGS: dict[str, str] = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}


class StoreError(Exception):
    """A mailbox operation failed; the message says why."""


class FolderNotFound(StoreError):
    """The folder does not exist."""


class FolderExists(StoreError):
    """A folder with that name already exists."""


class BadFolderName(StoreError):
    """The folder name cannot be used (empty part, control characters, too long...)."""


class MessageGone(StoreError):
    """The message was expunged (by this or another session) or its file vanished."""


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as the index knows it. ``flags`` holds system flags and keywords."""

    uid: int
    size: int
    flags: frozenset[str]
    internaldate: float
    path: Path
    recent: bool = False


@dataclass(slots=True)
class FolderChanges:
    """What :meth:`Folder.refresh` found since the previous refresh of this Folder object."""

    added: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.expunged or self.flags)


class Folder:
    """One open folder: a session's view of its messages, in UID order.

    The view changes only through this object's own calls and :meth:`refresh`, so an IMAP
    session can keep message sequence numbers stable between its commands.
    Not shared between threads at the same time.
    """

    uidvalidity: int
    uidnext: int

    def refresh(self) -> FolderChanges:
        """Pick up deliveries, expunges and flag changes made elsewhere; return them."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Messages in this view."""
        raise NotImplementedError

    def messages(self) -> Sequence[MessageInfo]:
        """Every message of this view in UID order (position + 1 = IMAP sequence number)."""
        raise NotImplementedError

    def uids(self) -> Sequence[int]:
        """The UIDs of this view in ascending order."""
        raise NotImplementedError

    def get(self, uid: int) -> MessageInfo | None:
        """The message with ``uid`` in this view, or None."""
        raise NotImplementedError

    def unseen(self) -> int:
        """How many messages of this view lack ``\\Seen``."""
        raise NotImplementedError

    def first_unseen(self) -> int | None:
        """The UID of the first message without ``\\Seen``, or None."""
        raise NotImplementedError

    def recent_count(self) -> int:
        """How many messages of this view are recent (still in ``new/``)."""
        raise NotImplementedError

    def claim_recent(self) -> list[int]:
        """Move messages from ``new/`` to ``cur/``; return the UIDs this call moved.

        Only one session wins each message, so ``\\Recent`` is seen by one session only.
        """
        raise NotImplementedError

    def keywords(self) -> list[str]:
        """Keywords ever used in this folder (for IMAP FLAGS / PERMANENTFLAGS)."""
        raise NotImplementedError

    def read(self, uid: int) -> bytes:
        """The message bytes exactly as stored; raises :class:`MessageGone`."""
        raise NotImplementedError

    def open_file(self, uid: int) -> BinaryIO:
        """An open binary file of the message (follows renames by other sessions)."""
        raise NotImplementedError

    def set_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: FlagMode = "replace"
    ) -> dict[int, frozenset[str]]:
        """Change flags; return each changed-or-not message's flags afterwards.

        UIDs not in the view are skipped. System flags go into the Maildir info
        (``:2,DFRST``); keywords are kept in the index only. ``\\Recent`` is ignored.
        """
        raise NotImplementedError

    def append(
        self,
        data: bytes | Path,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> int:
        """Store a message (tmp -> fsync -> rename) and return its UID."""
        raise NotImplementedError

    def copy(self, uids: Iterable[int], target: Folder) -> list[tuple[int, int]]:
        """Copy messages with their flags into ``target``; return (source uid, target uid)."""
        raise NotImplementedError

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the ``\\Deleted`` messages (or exactly ``uids``); return the removed UIDs."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the index connection."""
        raise NotImplementedError


class MailStore:
    """One user's Maildir++ root and its folders."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def folders(self) -> list[str]:
        """Every existing folder name, "INBOX" first, the rest sorted."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        """True when the folder exists."""
        raise NotImplementedError

    def create_folder(self, name: str) -> None:
        """Create a folder; raises :class:`FolderExists` or :class:`BadFolderName`."""
        raise NotImplementedError

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages (its subfolders stay); INBOX cannot be deleted."""
        raise NotImplementedError

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its subfolders; renaming INBOX moves its messages."""
        raise NotImplementedError

    def open(self, folder: str = "INBOX") -> Folder:
        """Open a folder (INBOX is created when missing); raises :class:`FolderNotFound`."""
        raise NotImplementedError

    def usage_bytes(self) -> int:
        """Bytes used by the messages of all folders (from the indexes)."""
        raise NotImplementedError
