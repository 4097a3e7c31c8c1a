"""MailStore: one user's Maildir++ mailbox and its folders -- the store's public API.

Every folder keeps a SQLite index (:mod:`mailmax.core.store.index`) beside its ``cur/new/tmp``,
so opening a large folder reads a few rows instead of every message; :class:`Folder` is one
session's view of a folder. Folder names are IMAP-style with ``/`` between levels ("INBOX",
"Sent", "Archive/2024"); see :mod:`mailmax.core.store.names` for the on-disk form.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mailmax.core.store.durable import SYNC_MODES, default_sync_mode, group_for
from mailmax.core.store.errors import (
    BadFlag,
    BadFolderName,
    FolderExists,
    FolderNotFound,
    MessageGone,
    StoreError,
    TooManyKeywords,
    UidValidityChanged,
)
from mailmax.core.store.files import fsync_dir, make_dirs, unique_suffix
from mailmax.core.store.folder import FlagMode, Folder, FolderChanges, MessageInfo
from mailmax.core.store.names import folder_dirname, folder_from_dirname, folder_parts, is_inbox

__all__ = [
    "BadFlag",
    "BadFolderName",
    "FlagMode",
    "Folder",
    "FolderChanges",
    "FolderExists",
    "FolderNotFound",
    "MailStore",
    "MessageGone",
    "MessageInfo",
    "StoreError",
    "TooManyKeywords",
    "UidValidityChanged",
]


class MailStore:
    """One user's Maildir++ root and its folders."""

    def __init__(self, root: Path, *, fsync: bool = True, sync: str | None = None) -> None:
        self.root = Path(root)
        self.fsync = fsync
        #: How changes are made durable (see :mod:`mailmax.core.store.durable`).
        self.sync_mode = sync if sync is not None else default_sync_mode(fsync)
        if self.sync_mode not in SYNC_MODES:
            raise ValueError(f"unknown sync mode {self.sync_mode!r} (one of {SYNC_MODES})")
        if self.sync_mode == "none":
            self.fsync = False

    def make_durable(self, folder_dir: Path) -> None:
        """In ``filesystem`` mode: wait for a file-system sync covering every change made
        so far in ``folder_dir`` (shared with other callers); otherwise nothing to do."""
        if self.sync_mode == "filesystem":
            group_for(folder_dir).sync(folder_dir)

    def folder_dir(self, name: str) -> Path:
        """The directory of a folder (INBOX is the root); raises :class:`BadFolderName`."""
        if is_inbox(name):
            return self.root
        return self.root / folder_dirname(name)

    def folders(self) -> list[str]:
        """Every existing folder name, "INBOX" first, the rest sorted."""
        names = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    name = folder_from_dirname(entry.name)
                    if name and entry.is_dir() and os.path.isdir(os.path.join(entry.path, "cur")):
                        names.append(name)
        except FileNotFoundError:
            pass
        return ["INBOX", *sorted(n for n in names if not is_inbox(n))]

    def exists(self, name: str) -> bool:
        """True when the folder exists (INBOX always does)."""
        return is_inbox(name) or (self.folder_dir(name) / "cur").is_dir()

    def create_folder(self, name: str) -> None:
        """Create a folder; raises :class:`FolderExists` or :class:`BadFolderName`."""
        if is_inbox(name):
            raise FolderExists("INBOX always exists")
        target = self.folder_dir(name)
        if (target / "cur").is_dir():
            raise FolderExists(f"folder {name!r} already exists")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = self.root / f"mailmax-creating-{unique_suffix()}"
        make_dirs(staging)
        (staging / "maildirfolder").touch()
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if (target / "cur").is_dir():
                raise FolderExists(f"folder {name!r} already exists") from None
            raise
        if self.fsync:
            fsync_dir(self.root)

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages (its subfolders stay); INBOX cannot be deleted."""
        if is_inbox(name):
            raise StoreError("INBOX cannot be deleted")
        target = self.folder_dir(name)
        if not (target / "cur").is_dir():
            raise FolderNotFound(f"folder {name!r} does not exist")
        doomed = self.root / f"mailmax-deleting-{unique_suffix()}"
        try:
            os.rename(target, doomed)
        except FileNotFoundError:
            raise FolderNotFound(f"folder {name!r} does not exist") from None
        shutil.rmtree(doomed, ignore_errors=True)

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its subfolders; renaming INBOX moves its messages."""
        new_parts = folder_parts(new)
        if is_inbox(new):
            raise FolderExists("INBOX always exists")
        if is_inbox(old):
            self._rename_inbox(new)
            return
        old_parts = folder_parts(old)
        if new_parts[: len(old_parts)] == old_parts:
            raise BadFolderName(f"cannot move folder {old!r} into itself")
        moves = []
        for name in self.folders():
            parts = name.split("/")
            if parts[: len(old_parts)] == old_parts:
                moves.append((name, "/".join(new_parts + parts[len(old_parts) :])))
        if not moves:
            raise FolderNotFound(f"folder {old!r} does not exist")
        for _, target in moves:
            if self.exists(target):
                raise FolderExists(f"folder {target!r} already exists")
        for source, target in moves:
            os.rename(self.folder_dir(source), self.folder_dir(target))
        if self.fsync:
            fsync_dir(self.root)

    def _rename_inbox(self, new: str) -> None:
        self.create_folder(new)
        target = self.folder_dir(new)
        for sub in ("new", "cur"):
            source = self.root / sub
            if not source.is_dir():
                continue
            with os.scandir(source) as entries:
                for entry in entries:
                    if entry.is_file() and not entry.name.startswith("."):
                        os.rename(entry.path, target / sub / entry.name)
        if self.fsync:
            fsync_dir(target / "cur")
            fsync_dir(target / "new")

    def open(self, folder: str = "INBOX") -> Folder:
        """Open a folder (INBOX is created when missing); raises :class:`FolderNotFound`."""
        folder_dir = self.folder_dir(folder)
        if is_inbox(folder):
            make_dirs(folder_dir)
            folder = "INBOX"
        elif not (folder_dir / "cur").is_dir():
            raise FolderNotFound(f"folder {folder!r} does not exist")
        return Folder(self, folder, folder_dir)

    def usage_bytes(self) -> int:
        """Bytes used by the messages of all folders (from the indexes)."""
        total = 0
        for name in self.folders():
            with self.open(name) as folder:
                total += folder.total_size()
        return total
