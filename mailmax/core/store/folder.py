"""Folder: a session's view of one Maildir folder, backed by its index.

Every folder keeps a SQLite index (:mod:`mailmax.core.store.index`) beside its ``cur/new/tmp``,
so opening a large folder reads a few rows instead of every message. The Maildir stays the
truth: messages that appear, vanish or change flags on disk (deliveries, other tools, other
sessions) are picked up by :meth:`Folder.refresh`, which costs two ``stat`` calls when nothing
changed.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from mailmax.core.store.errors import MessageGone, TooManyKeywords, UidValidityChanged
from mailmax.core.store.files import fsync_dir, link_tmp, write_tmp
from mailmax.core.store.index import DIRTY, FolderIndex, Row, split_flags
from mailmax.core.store.names import MAX_KEYWORDS, canonical_flag, filename_with
from mailmax.core.store.view import FlagCache, FolderChanges, MessageInfo

if TYPE_CHECKING:
    from mailmax.core.store.mailbox import MailStore

FlagMode = Literal["replace", "add", "remove"]


@dataclass(slots=True)
class _FlagBatch:
    """One flag change's work: outcomes by (old letters, old keywords), index updates."""

    outcomes: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    updates: list[tuple[str, int, str, str, int]] = field(default_factory=list)
    view_changed: bool = False


class Folder:
    """One open folder: a session's view of its messages, in UID order.

    The view changes only through this object's own calls and :meth:`refresh`, so an IMAP
    session keeps message sequence numbers stable between its commands. Thread-safe, but
    meant for one session.
    """

    def __init__(self, store: MailStore, name: str, folder_dir: Path) -> None:
        self.store = store
        self.name = name
        self.dir = folder_dir
        self._dir_str = str(folder_dir)
        self._lock = threading.RLock()
        self._index = FolderIndex(folder_dir, store.root, fsync=store.fsync)
        self._index.sync()
        #: A first build still being written: what it will leave (see firstbuild.py).
        self.early = self._index.early
        if self.early is not None:
            early = self.early
            self.uidvalidity, self.uidnext, self._modseq = (
                early.uidvalidity,
                early.uidnext,
                early.modseq,
            )
            self._count = early.count
        else:
            with self._index.snapshot():  # every row counted is below uidnext
                self.uidvalidity, self.uidnext, self._modseq = self._index.state()
                self._count = self._index.count()
        self._view: dict[int, MessageInfo] | None = None
        #: The modification sequence the view was read at (it is read when first needed, so
        #: it may already hold changes made after ``_modseq`` that were never reported).
        self._view_modseq = self._modseq
        self._order: tuple[MessageInfo, ...] | None = None
        self._uid_order: tuple[int, ...] | None = None
        self._own: set[int] = set()  # modification sequences of this object's own writes
        self._flag_cache = FlagCache()

    # ------------------------------------------------------------------ view
    def _flags(self, letters: str, keywords: str) -> frozenset[str]:
        return self._flag_cache[letters, keywords]

    def _info(self, row: Row) -> MessageInfo:
        return MessageInfo(
            row.uid,
            row.size,
            self._flags(row.letters, row.keywords),
            row.internaldate,
            f"{row.subdir}/{row.filename}",
            self.dir,
        )

    def _loaded(self) -> dict[int, MessageInfo]:
        if self._view is not None:
            return self._view
        with self._index.snapshot() as conn:
            self._view_modseq = self._index.state()[2]
            rows = conn.execute(
                "SELECT uid, size, letters, keywords, internaldate, in_new, filename "
                "FROM messages WHERE uid < ? ORDER BY uid",
                (self.uidnext,),
            ).fetchall()
            gone = self._foreign_expunges()
        # the hot loop of opening a big folder: no per-row calls but the tuple constructor
        new, info_type, folder_dir = tuple.__new__, MessageInfo, self.dir
        cache = self._flag_cache
        view = {
            uid: new(
                info_type,
                (
                    uid,
                    size,
                    cache[letters, keywords],
                    when,
                    ("new/" if in_new else "cur/") + filename,
                    folder_dir,
                ),
            )
            for uid, size, letters, keywords, when, in_new, filename in rows
        }
        if gone:  # expunged elsewhere, not reported yet: keep their places until refresh
            for uid in gone:
                view[uid] = MessageInfo(uid, 0, frozenset(), 0.0, "", folder_dir)
            view = dict(sorted(view.items()))
        self._view = view
        self._count = len(view)
        return view

    def _foreign_expunges(self) -> list[int]:
        cursor = self._index.conn.execute(
            "SELECT uid, modseq FROM expunged WHERE modseq > ? AND uid < ?",
            (self._modseq, self.uidnext),
        )
        return [uid for uid, modseq in cursor if modseq not in self._own]

    def _changed(self) -> None:
        self._order = None
        self._uid_order = None

    def __len__(self) -> int:
        """Messages in this view."""
        return len(self._view) if self._view is not None else self._count

    def messages(self) -> Sequence[MessageInfo]:
        """Every message of this view in UID order (position + 1 = IMAP sequence number)."""
        with self._lock:
            return self._ordered(self._loaded())

    def _ordered(self, view: dict[int, MessageInfo]) -> tuple[MessageInfo, ...]:
        if self._order is None:
            self._order = tuple(view.values())
        return self._order

    def loaded_messages(self) -> Sequence[MessageInfo] | None:
        """:meth:`messages` when the view is in memory already and no other thread is
        working on this folder, else None. Never waits and reads no file or index, so the
        reactor may call it."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return None if self._view is None else self._ordered(self._view)
        finally:
            self._lock.release()

    def uids(self) -> Sequence[int]:
        """The UIDs of this view in ascending order."""
        with self._lock:
            if self._uid_order is None:
                self._uid_order = tuple(self._loaded())
            return self._uid_order

    def get(self, uid: int) -> MessageInfo | None:
        """The message with ``uid`` in this view, or None."""
        with self._lock:
            if self._view is not None:
                return self._view.get(uid)
            if uid >= self.uidnext:
                return None
            row = self._index.row(uid)
            return self._info(row) if row else None

    def position(self, uid: int) -> int | None:
        """The sequence number (1-based) of ``uid`` in this view, or None.

        Cheap before the view is loaded: counts index rows from the nearer end.
        """
        with self._lock:
            if self._view is not None:
                order = self.uids()
                at = bisect.bisect_left(order, uid)
                return at + 1 if at < len(order) and order[at] == uid else None
            if not 0 < uid < self.uidnext:
                return None
            conn = self._index.conn
            conn.execute("BEGIN")
            try:
                gone = self._foreign_expunges()
                if uid not in gone and self._index.row(uid) is None:
                    return None
                if uid * 2 < self.uidnext:
                    below = self._index.count(uid)
                else:
                    below = self._index.count() - self._index.count_from(uid)
            finally:
                conn.execute("COMMIT")
            return below + sum(1 for g in gone if g < uid) + 1

    def unseen(self) -> int:
        """How many messages lack ``\\Seen`` (from the index)."""
        with self._lock:
            return self._index.count_where("unseen", self.uidnext)

    def first_unseen(self) -> int | None:
        """The UID of the first message without ``\\Seen``, or None."""
        with self._lock:
            return self._index.first_unseen(self.uidnext)

    def recent_count(self) -> int:
        """How many messages are recent: still in ``new/``, or added by APPEND/COPY and not
        yet claimed by a session."""
        with self._lock, self._index.snapshot():
            in_new = self._index.count_where("new", self.uidnext)
            return in_new + len(self._index.marked_recent(self.uidnext))

    def recent_uids(self) -> set[int]:
        """The UIDs of the recent messages (see :meth:`recent_count`); claims nothing."""
        with self._lock, self._index.snapshot():
            found = set(self._index.uids_where("new", self.uidnext))
            found.update(self._index.marked_recent(self.uidnext))
            return found

    def keywords(self) -> list[str]:
        """Keywords ever used in this folder (for IMAP FLAGS / PERMANENTFLAGS)."""
        with self._lock:
            return self._index.keywords()

    # ------------------------------------------------------------------ refresh
    def refresh(self) -> FolderChanges:
        """Pick up deliveries, expunges and flag changes made elsewhere; return them.

        Raises :class:`UidValidityChanged` when the index was rebuilt with new UIDs.
        """
        with self._lock:
            index = self._index
            index.sync()
            conn = index.conn
            conn.execute("BEGIN")
            try:
                uidvalidity, uidnext, modseq = index.state()
                if uidvalidity != self.uidvalidity:
                    raise UidValidityChanged(
                        f"folder {self.name!r} was re-indexed: UIDVALIDITY {self.uidvalidity} "
                        f"became {uidvalidity}; select it again"
                    )
                if modseq == self._modseq and uidnext == self.uidnext:
                    return FolderChanges()
                added = index.rows(start=self.uidnext)
                changed = index.changed_since(self._modseq, self.uidnext, self._own)
                gone = set(self._foreign_expunges())
            finally:
                conn.execute("COMMIT")
            changes = FolderChanges()
            view = self._view
            if view is not None:
                gone &= view.keys()
            changes.expunged = sorted(gone)
            for row in changed:
                if row.uid in gone:
                    continue
                info = self._info(row)
                if view is not None:
                    old = view.get(row.uid)
                    if old is None:
                        continue
                    view[row.uid] = info
                    if old.flags == info.flags and row.modseq > self._view_modseq:
                        continue
                changes.flags[row.uid] = info.flags
            if view is not None:
                for uid in gone:
                    del view[uid]
                for row in added:
                    view[row.uid] = self._info(row)
            changes.added = [r.uid for r in added]
            self._count += len(changes.added) - len(changes.expunged)
            self.uidnext = max(uidnext, self.uidnext)
            self._modseq = modseq
            self._own = {m for m in self._own if m > modseq}
            self._changed()
            return changes

    # ------------------------------------------------------------------ reading
    def _current_row(self, uid: int) -> Row:
        """The row of a message in this view whose file exists, re-syncing once if needed."""
        if self.get(uid) is None:
            raise MessageGone(f"message UID {uid} is not in folder {self.name!r}")
        for attempt in range(2):
            row = self._index.row(uid)
            if row is not None and (self.dir / row.subdir / row.filename).exists():
                return row
            if attempt == 0:
                self._index.sync(force=True)
        raise MessageGone(f"message UID {uid} of folder {self.name!r} was expunged")

    def open_file(self, uid: int) -> BinaryIO:
        """An open binary file of the message (follows renames by other sessions)."""
        with self._lock:
            info = self.get(uid)
            if info is None:
                raise MessageGone(f"message UID {uid} is not in folder {self.name!r}")
            if not info.filename:
                raise MessageGone(f"message UID {uid} was expunged by another session")
            try:
                return open(info.path, "rb")
            except FileNotFoundError:
                row = self._current_row(uid)
                if self._view is not None:
                    self._view[uid] = self._info(row)
                    self._changed()
                try:
                    return open(self.dir / row.subdir / row.filename, "rb")
                except FileNotFoundError:
                    raise MessageGone(f"message UID {uid} was expunged") from None

    def read(self, uid: int) -> bytes:
        """The message bytes exactly as stored; raises :class:`MessageGone`."""
        with self.open_file(uid) as handle:
            return handle.read()

    # ------------------------------------------------------------------ writing
    def _rename(self, row: Row, letters: str) -> str:
        """Move a message file to ``cur/`` with new info letters; return the new name."""
        new_name = filename_with(row.base, letters)
        folder = self._dir_str
        try:
            os.rename(f"{folder}/{row.subdir}/{row.filename}", f"{folder}/cur/{new_name}")
        except FileNotFoundError:
            raise MessageGone(f"message UID {row.uid} was moved or expunged") from None
        return new_name

    def set_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: FlagMode = "replace"
    ) -> dict[int, frozenset[str]]:
        """Change flags; return the flags afterwards of every message that is still there.

        UIDs not in the view are skipped. System flags go into the Maildir info
        (``:2,DFRST``); keywords are kept in the index. ``\\Recent`` is ignored.
        """
        if mode not in ("replace", "add", "remove"):
            raise ValueError(f"unknown flag mode {mode!r}")
        wanted = frozenset(canonical_flag(f) for f in flags if f.lower() != "\\recent")
        result: dict[int, frozenset[str]] = {}
        with self._lock:
            todo = self._in_view(uids)
            self._index.sync()
            with self._index.write(durable=self.store.sync_mode == "files"):
                if mode != "remove":
                    self._make_keywords(wanted)
                before = self._cur_mtime()
                rows = self._index.rows_for(todo)
                batch = _FlagBatch()
                try:
                    for uid in todo:
                        row = rows.get(uid)
                        if row is None:
                            continue
                        try:
                            flags_now = self._set_one(row, wanted, mode, batch)
                        except MessageGone:  # renamed behind our back: look again once
                            try:
                                row = self._current_row(uid)
                                flags_now = self._set_one(row, wanted, mode, batch)
                            except MessageGone:
                                continue
                        result[uid] = flags_now
                finally:
                    self._index.update_files(batch.updates)
                    if batch.view_changed:
                        self._changed()
                changed = self._own_write(before)
        if changed:
            self._durable()
        return result

    def _own_write(self, before: int) -> bool:
        """Note this object's changes in the open write transaction as its own (``before``:
        ``cur/``'s time before them), so that a refresh does not report them back; True when
        anything changed."""
        self._index.own_change("cur", before)
        modseq = self._index.txn_modseq
        if modseq is not None:
            self._own.add(modseq)
        return modseq is not None

    def _durable(self) -> None:
        """Make this folder's committed renames, removals and index changes durable
        (``files`` mode: the index commit was synced already)."""
        if self.store.sync_mode == "files":
            fsync_dir(self.dir / "cur")
            fsync_dir(self.dir / "new")
        else:
            self.store.make_durable(self.dir)

    def _make_keywords(self, flags: Iterable[str]) -> None:
        """Note the keywords among ``flags`` (inside a write transaction, before anything
        changes); raises :class:`TooManyKeywords` when new ones would pass the bound."""
        keywords = {f for f in flags if not f.startswith("\\") and f != "$Forwarded"}
        if not keywords:
            return
        known = set(self._index.keywords())
        new = keywords - known
        if new and len(known) + len(new) > MAX_KEYWORDS:
            raise TooManyKeywords(
                f"the mailbox has {len(known)} keywords and may have at most {MAX_KEYWORDS}"
            )
        self._index.note_keywords(new)

    def _in_view(self, uids: Iterable[int]) -> list[int]:
        """``uids`` that belong to this view, sorted (rows may have gone meanwhile)."""
        if self._view is not None:
            view = self._view
            return sorted({u for u in uids if u in view and view[u].filename})
        return sorted({u for u in uids if 0 < u < self.uidnext})

    def _set_one(
        self, row: Row, wanted: frozenset[str], mode: FlagMode, batch: _FlagBatch
    ) -> frozenset[str]:
        uid = row.uid
        outcome = batch.outcomes.get((row.letters, row.keywords))
        if outcome is None:
            current = self._flags(row.letters, row.keywords)
            if mode == "replace":
                new = wanted
            elif mode == "add":
                new = current | wanted
            else:
                new = current - wanted
            outcome = split_flags(new, row.letters)
            batch.outcomes[row.letters, row.keywords] = outcome
        letters, keywords = outcome
        if letters == row.letters and keywords == row.keywords:
            return self._flags(letters, keywords)
        name, in_new = row.filename, row.in_new
        if letters != row.letters:
            name, in_new = self._rename(row, letters), False
        batch.updates.append((name, int(in_new), letters, keywords, uid))
        flags = self._flags(letters, keywords)
        view = self._view
        if view is not None:
            old = view.get(uid)
            if old is not None:
                where = ("new/" if in_new else "cur/") + name
                view[uid] = MessageInfo(uid, old.size, flags, old.internaldate, where, self.dir)
                batch.view_changed = True
        return flags

    def _cur_mtime(self) -> int:
        try:
            return os.stat(self.dir / "cur").st_mtime_ns
        except FileNotFoundError:
            return DIRTY

    def claim_recent(self) -> list[int]:
        """Claim the recent messages; return their UIDs.

        Messages in ``new/`` move to ``cur/``; those APPEND or COPY added lose their mark.
        Only one session wins each message, so ``\\Recent`` is seen by one session only.
        """
        claimed: list[int] = []
        with self._lock:
            self._index.sync()
            with self._index.write():
                before = self._cur_mtime()
                for uid in self._index.uids_where("new", self.uidnext):
                    row = self._index.row(uid)
                    if row is None or not row.in_new or self.get(uid) is None:
                        continue
                    try:
                        name = self._rename(row, row.letters)
                    except MessageGone:
                        continue
                    self._index.update_file(uid, name, False, row.letters, row.keywords)
                    claimed.append(uid)
                    if self._view is not None:
                        self._view[uid] = self._view[uid]._replace(filename=f"cur/{name}")
                self._own_write(before)
                marked = [u for u in self._index.take_recent(self.uidnext) if self.get(u)]
            if claimed:
                self._changed()
        return sorted(claimed + marked) if marked else claimed

    def _commit_new(self, items: list[tuple[str, Path, int, float, str, str]]) -> list[int]:
        """Rename tmp files into ``cur/`` and index them: (base, tmp, size, when, letters, kw)."""
        uids: list[int] = []
        files = self.store.sync_mode == "files"
        with self._lock, self._index.write(durable=files):
            self._make_keywords({k for *_, kw in items for k in kw.split()})
            before = self._cur_mtime()
            first = self._index.allocate_uids(len(items))
            modseq = self._index.bump_modseq()
            rows = []
            for offset, (base, tmp, size, when, letters, keywords) in enumerate(items):
                name = filename_with(base, letters)
                os.rename(tmp, self.dir / "cur" / name)
                rows.append(
                    Row(first + offset, base, name, False, size, when, letters, keywords, modseq)
                )
                uids.append(first + offset)
            if files:
                fsync_dir(self.dir / "cur")
            self._index.insert(rows)
            self._index.mark_recent(uids)
            self._index.own_change("cur", before)
        self.store.make_durable(self.dir)
        return uids

    def append(
        self,
        data: bytes | Path,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> int:
        """Store a message (tmp -> fsync -> rename) and return its UID.

        The new message joins this view at the next :meth:`refresh` (reported as added); it
        is recent until a session claims it (:meth:`claim_recent`).
        """
        wanted = frozenset(canonical_flag(f) for f in flags if f.lower() != "\\recent")
        when = time.time() if internaldate is None else float(internaldate)
        files = self.store.sync_mode == "files"
        base, tmp, size = write_tmp(self.dir, data, when, fsync=files)
        letters, keywords = split_flags(wanted)
        try:
            return self._commit_new([(base, tmp, size, when, letters, keywords)])[0]
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def copy(self, uids: Iterable[int], target: Folder) -> list[tuple[int, int]]:
        """Copy messages with their flags into ``target``; return (source uid, target uid).

        Files are hard-linked when possible (Maildir files never change), else copied. The
        copies are recent in ``target`` until a session claims them.
        """
        staged: list[tuple[int, tuple[str, Path, int, float, str, str]]] = []
        try:
            with self._lock:
                for uid in sorted(set(uids)):
                    if self.get(uid) is None:
                        continue
                    try:
                        row = self._current_row(uid)
                    except MessageGone:
                        continue
                    staged.append(
                        (uid, target._stage_copy(self.dir / row.subdir / row.filename, row))
                    )
            new_uids = target._commit_new([item for _, item in staged]) if staged else []
        except BaseException:
            for _, item in staged:
                item[1].unlink(missing_ok=True)
            raise
        return [(uid, new) for (uid, _), new in zip(staged, new_uids, strict=True)]

    def _stage_copy(self, source: Path, row: Row) -> tuple[str, Path, int, float, str, str]:
        try:
            files = self.store.sync_mode == "files"
            base, tmp = link_tmp(self.dir, source, row.internaldate, row.size, files)
        except FileNotFoundError:
            raise MessageGone(f"message UID {row.uid} vanished while being copied") from None
        letters = "".join(ch for ch in row.letters if ch.isupper())
        return base, tmp, row.size, row.internaldate, letters, row.keywords

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the ``\\Deleted`` messages (or exactly ``uids``); return the removed UIDs."""
        done: list[int] = []
        with self._lock:
            self._index.sync()
            with self._index.write(durable=self.store.sync_mode == "files"):
                before = self._cur_mtime()
                if uids is None:
                    todo = self._in_view(self._index.uids_where("deleted", self.uidnext))
                else:
                    todo = self._in_view(uids)
                rows = self._index.rows_for(todo)
                for uid in todo:
                    row = rows.get(uid)
                    if row is None:
                        continue
                    try:
                        try:
                            os.unlink(f"{self._dir_str}/{row.subdir}/{row.filename}")
                        except FileNotFoundError:  # renamed behind our back: look again once
                            row = self._current_row(uid)
                            os.unlink(f"{self._dir_str}/{row.subdir}/{row.filename}")
                    except (MessageGone, FileNotFoundError):
                        continue
                    done.append(uid)
                self._index.delete(done)
                self._own_write(before)
            if done:
                if self._view is not None:
                    for uid in done:
                        self._view.pop(uid, None)
                self._count -= len(done)
                self._changed()
        if done:
            self._durable()
        return done

    def total_size(self) -> int:
        """Bytes of every message in the folder (from the index)."""
        with self._lock:
            return self._index.total_size()

    def close(self) -> None:
        """Release the index connection."""
        with self._lock:
            self._index.close()

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
