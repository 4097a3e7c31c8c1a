"""Keeping a folder's index in line with its Maildir: directory mtimes and rescans.

:meth:`DiskSync.sync` compares the ``new/`` and ``cur/`` modification times with the ones
stored at the last scan and rescans only a directory that changed, so a sync of an unchanged
folder costs two ``stat`` calls. A stored mtime is trusted only when it is safely older than
the scan that stored it: a change in the same timestamp tick would leave the mtime as it was.
File systems with nanosecond timestamps tick every few milliseconds; those that keep whole
seconds (the mtimes say so) get a two-second margin.

A rescan compares names only (the index keeps the file name of every message): new files get
UIDs in arrival order, vanished ones are expunged, renamed ones (flags changed by another
program, moved from ``new/`` to ``cur/``) are updated. Building the index of a large folder
is one transaction with one bulk insert.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from mailmax.core.store.names import INFO_SEPARATOR, SANE_TIME, base_of, parse_filename

#: Stored instead of a directory mtime that must be rescanned next time.
DIRTY = -1
#: A directory mtime this close to the scan (nanosecond file systems) is not trusted yet.
FINE_MARGIN_NS = 100_000_000
#: The same for file systems whose mtimes are whole seconds.
COARSE_MARGIN_NS = 2_000_000_000
#: Builds at least this big create the secondary indexes after the rows (faster).
BULK_ROWS = 2000
#: The unique index of the messages table's ``base`` column (schema version 3).
BASE_INDEX = "messages_base"
#: Secondary indexes of the messages table: (name, definition).
SECONDARY_INDEXES = (
    ("messages_modseq", "ON messages (modseq)"),
    ("messages_new", "ON messages (uid) WHERE in_new = 1"),
    ("messages_unseen", "ON messages (uid) WHERE instr(letters, 'S') = 0"),
    ("messages_deleted", "ON messages (uid) WHERE instr(letters, 'T') > 0"),
)
#: The usual message file names: time (classic or queue id), size right after the first comma,
#: info letters; what does not match goes through :func:`parse_filename`.
_COMMON_NAME = re.compile(
    r"(?:(\d{9,11})\.(?:M(\d{1,6}))?|([0-9a-f]{14})[0-9a-f]{4}-)[^,:]*,S=(\d+)"
    r"(?:[^:]*:2,(.*))?"
)
#: Single-directory rescans look names up one by one below this many unknown files.
_LOOKUP_ONE_BY_ONE = 64

_Listing = dict[str, tuple[str, str]]  # base -> (subdir, filename)


def mtime(path: Path | str) -> int:
    """A directory's mtime in nanoseconds, or :data:`DIRTY` when it is missing."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return DIRTY


def settled(value: int, scan_start: int) -> bool:
    """True when any change after ``scan_start`` must give the directory another mtime."""
    if value == DIRTY:
        return False
    margin = COARSE_MARGIN_NS if value % 1_000_000_000 == 0 else FINE_MARGIN_NS
    return value < scan_start - margin


class DiskSync:
    """Mixed into :class:`~mailmax.core.store.index.FolderIndex`: the Maildir -> index side."""

    dir: Path
    conn: sqlite3.Connection

    if TYPE_CHECKING:  # provided by FolderIndex, which mixes this class in

        def write(self, durable: bool = False) -> AbstractContextManager[sqlite3.Connection]:
            """A write transaction."""
            ...

        def bump_modseq(self) -> int:
            """The modification sequence of the current write transaction."""
            ...

        def delete(self, uids: list[int]) -> None:
            """Forget expunged messages."""
            ...

        def allocate_uids(self, count: int) -> int:
            """Reserve UIDs."""
            ...

        def note_keywords(self, keywords: set[str]) -> None:
            """Remember keywords."""
            ...

        def insert_rows(self, rows: list[tuple]) -> None:
            """Insert row tuples in column order."""
            ...

    def _announce(self, rows: list[tuple], modseq: int) -> None:
        """Rows of a first build are about to be written (FirstBuild)."""

    def _has_index(self, name: str) -> bool:
        """True when the index ``name`` exists."""
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    # ------------------------------------------------------------------ mtimes
    def dir_mtimes(self) -> tuple[int, int]:
        """The stored ``(new, cur)`` directory mtimes."""
        return self.conn.execute("SELECT new_mtime, cur_mtime FROM state").fetchone()

    def own_change(self, subdir: str, before: int) -> None:
        """After this index changed ``subdir`` itself: keep the stored mtime trustworthy.

        ``before`` is the directory's mtime just before the change. When it equalled the
        stored one nobody else changed the directory, so its new mtime is stored and the next
        sync skips a rescan. ``new/`` is always left to a rescan: deliveries never take the
        index lock.
        """
        if subdir != "cur":
            return
        stored = self.dir_mtimes()[1]
        if before == stored and stored != DIRTY:
            self.conn.execute(
                "UPDATE state SET cur_mtime = ? WHERE id = 1", (mtime(self.dir / "cur"),)
            )

    # ------------------------------------------------------------------ sync
    def sync(self, force: bool = False, known: dict[str, tuple[int, str]] | None = None) -> bool:
        """Bring the index in line with the Maildir; True when rows changed.

        ``known`` maps unique names to ``(uid, keywords)`` kept from an old index.
        """
        new_dir, cur_dir = self.dir / "new", self.dir / "cur"
        if not force:
            stored_new, stored_cur = self.dir_mtimes()
            if (
                stored_new != DIRTY
                and stored_cur != DIRTY
                and mtime(new_dir) == stored_new
                and mtime(cur_dir) == stored_cur
            ):
                return False
        # UIDs handed out before must never be handed out again to other messages, so a
        # commit adding to them is synced; the first build is not: redone after a crash, it
        # gives the same messages the same UIDs (arrival order).
        handed_out = self.conn.execute("SELECT uidnext FROM state").fetchone()[0] > 1
        with self.write(durable=handed_out):
            stored_new, stored_cur = self.dir_mtimes()
            scan_start = time.time_ns()
            now_new, now_cur = mtime(new_dir), mtime(cur_dir)
            scan = set()
            if force or stored_new == DIRTY or now_new != stored_new:
                scan.add("new")
            if force or stored_cur == DIRTY or now_cur != stored_cur:
                scan.add("cur")
            if not scan:
                return False
            changed = self._rescan(scan, known or {})
            self.conn.execute(
                "UPDATE state SET new_mtime = ?, cur_mtime = ? WHERE id = 1",
                (
                    now_new if settled(now_new, scan_start) else DIRTY,
                    now_cur if settled(now_cur, scan_start) else DIRTY,
                ),
            )
        return changed

    def _rescan(self, scan: set[str], known: dict[str, tuple[int, str]]) -> bool:
        if len(scan) == 2 and not self.conn.execute("SELECT 1 FROM messages LIMIT 1").fetchone():
            return self._build(known)  # nothing indexed yet: nothing to compare with
        disk: _Listing = {}
        for subdir in sorted(scan):
            disk.update(self._listdir(subdir))
        columns = "SELECT base, uid, filename, in_new, keywords FROM messages"
        if len(scan) == 2:
            cursor = self.conn.execute(columns)
        else:
            cursor = self.conn.execute(columns + " WHERE in_new = ?", (int("new" in scan),))
        rows = {row[0]: row for row in cursor}  # the rows of the scanned directories
        updates: list[tuple[tuple, str, str]] = []  # (row, subdir, filename)
        for base, (subdir, filename) in disk.items():
            row = rows.get(base)
            if row is not None and (row[2] != filename or row[3] != (subdir == "new")):
                updates.append((row, subdir, filename))
        missing = rows.keys() - disk.keys()
        if missing and len(scan) == 1:  # moved to the other directory behind our back?
            other = self._listdir("cur" if "new" in scan else "new")
            for base in [b for b in missing if b in other]:
                updates.append((rows[base], *other[base]))
                missing.discard(base)
        gone = [rows[base][1] for base in missing]
        unknown = [base for base in disk if base not in rows]
        if unknown and len(scan) == 1:  # indexed while it was in the other directory?
            elsewhere = self._rows_by_base(unknown)
            updates += [(elsewhere[b], *disk[b]) for b in unknown if b in elsewhere]
            unknown = [b for b in unknown if b not in elsewhere]
        if not (gone or updates or unknown):
            return False
        self.delete(gone)
        if updates:
            modseq = self.bump_modseq()
            self.conn.executemany(
                "UPDATE messages SET filename = ?, in_new = ?, letters = ?, modseq = ? "
                "WHERE uid = ?",
                [
                    (name, int(sub == "new"), parse_filename(name).letters, modseq, row[1])
                    for row, sub, name in updates
                ],
            )
        if unknown:
            self._add_fresh([(base, *disk[base]) for base in unknown], known)
        return True

    def _rows_by_base(self, bases: list[str]) -> dict[str, tuple]:
        """Index rows (base, uid, filename, in_new, keywords) of ``bases``, in any directory."""
        columns = "SELECT base, uid, filename, in_new, keywords FROM messages"
        if len(bases) < _LOOKUP_ONE_BY_ONE:
            found = {}
            for base in bases:
                row = self.conn.execute(columns + " WHERE base = ?", (base,)).fetchone()
                if row is not None:
                    found[base] = row
            return found
        wanted = set(bases)
        return {row[0]: row for row in self.conn.execute(columns) if row[0] in wanted}

    def _listdir(self, subdir: str) -> _Listing:
        found: _Listing = {}
        try:
            with os.scandir(self.dir / subdir) as entries:
                for entry in entries:
                    name = entry.name
                    if name[0] == "." or not entry.is_file():
                        continue
                    base, sep, _ = name.partition(INFO_SEPARATOR)
                    if not sep and ":" in base:
                        base = base.split(":", 1)[0]
                    found[base] = (subdir, name)
        except FileNotFoundError:
            pass
        return found

    def _build(self, known: dict[str, tuple[int, str]]) -> bool:
        """Index every message of a folder whose index has no rows yet; True when any.

        The first build of a big folder: every file is new, so the listing is parsed
        straight into rows, without the comparisons of a rescan.
        """
        items = _parse_listing(self.dir, "cur", _names(self.dir / "cur"))
        fresh = _parse_listing(self.dir, "new", _names(self.dir / "new"))
        if fresh:
            items += fresh
            if len({item[1] for item in items}) != len(items):  # in both: new/ wins
                items = list({item[1]: item for item in items}.values())
        if not items:
            return False
        self._insert_fresh(items, known)
        return True

    def _add_fresh(
        self, fresh: list[tuple[str, str, str]], known: dict[str, tuple[int, str]]
    ) -> None:
        items: list[_Item] = []
        for base, subdir, filename in fresh:
            item = _parse_one(self.dir, subdir, base, filename)
            if item is not None:
                items.append(item)
        self._insert_fresh(items, known)

    def _insert_fresh(self, items: list[_Item], known: dict[str, tuple[int, str]]) -> None:
        """Give new messages UIDs in arrival order (or their ``known`` ones) and insert them."""
        modseq = self.bump_modseq()
        items.sort()
        rows: list[tuple]
        keywords_used: set[str] = set()
        if known:
            fresh_count = sum(1 for item in items if item[1] not in known)
            next_uid = self.allocate_uids(fresh_count) if fresh_count else 0
            rows = []
            for when, base, in_new, filename, size, letters in items:
                kept = known.get(base)
                if kept is None:
                    uid, keywords = next_uid, ""
                    next_uid += 1
                else:
                    uid, keywords = kept
                    keywords_used.update(keywords.split())
                rows.append((uid, base, filename, in_new, size, when, letters, keywords, modseq))
        else:
            first = self.allocate_uids(len(items)) if items else 0
            rows = [
                (uid, base, filename, in_new, size, when, letters, "", modseq)
                for uid, (when, base, in_new, filename, size, letters) in enumerate(items, first)
            ]
        bulk = (
            len(rows) >= BULK_ROWS
            and not self.conn.execute("SELECT 1 FROM messages LIMIT 1").fetchone()
        )
        self._announce(rows, modseq)
        unique = bulk and self._has_index(BASE_INDEX)  # older schemas: a UNIQUE column
        if bulk:  # building: the indexes are faster to make afterwards
            for name, _ in SECONDARY_INDEXES:
                self.conn.execute(f"DROP INDEX IF EXISTS {name}")
            if unique:
                self.conn.execute(f"DROP INDEX {BASE_INDEX}")
        try:
            self.insert_rows(rows)
        finally:
            if unique:
                self.conn.execute(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS {BASE_INDEX} ON messages (base)"
                )
            if bulk:
                for name, definition in SECONDARY_INDEXES:
                    self.conn.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
        if keywords_used:
            self.note_keywords(keywords_used)


#: A parsed message file: (arrival time, base, in_new, file name, size, info letters).
_Item = tuple[float, str, int, str, int, str]


def _names(directory: Path) -> list[str]:
    """The message file names in ``directory`` (dot files and non-files left out)."""
    try:
        with os.scandir(directory) as entries:
            return [e.name for e in entries if e.name[0] != "." and e.is_file()]
    except FileNotFoundError:
        return []


def _parse_listing(folder_dir: Path, subdir: str, names: list[str]) -> list[_Item]:
    """Parse the file names of one directory; the usual names take one regex match each."""
    in_new = int(subdir == "new")
    common, low, high = _COMMON_NAME.match, *SANE_TIME
    items: list[_Item] = []
    append = items.append
    for name in names:
        match = common(name)
        if match is not None:
            seconds, micros, queue, digits, letters = match.groups()
            # the ":2," matched is the first ":" of the name, so the base ends there
            if letters is not None:
                base = name[: match.start(5) - 3]
            elif ":" not in name:
                base, letters = name, ""
            else:
                base = None
            if base is not None:
                if seconds is not None:
                    when = int(seconds) + int(micros) / 1_000_000 if micros else float(seconds)
                else:
                    when = int(queue, 16) / 1_000_000
                if low < when < high:
                    append((when, base, in_new, name, int(digits), letters))
                    continue
        item = _parse_one(folder_dir, subdir, base_of(name), name)
        if item is not None:
            append(item)
    return items


def _parse_one(folder_dir: Path, subdir: str, base: str, filename: str) -> _Item | None:
    """One message file: the time and size from its name, else from ``stat``; None if gone."""
    in_new = int(subdir == "new")
    match = _COMMON_NAME.match(filename)  # the usual names in one step
    if match is not None:
        seconds, micros, queue, digits, letters = match.groups()
        if seconds is not None:
            when = int(seconds) + int(micros) / 1_000_000 if micros else float(seconds)
        else:
            when = int(queue, 16) / 1_000_000
        if SANE_TIME[0] < when < SANE_TIME[1]:
            return (when, base, in_new, filename, int(digits), letters or "")
    _, letters, size, parsed_when = parse_filename(filename)
    if size is None or parsed_when is None:
        try:
            st = os.stat(folder_dir / subdir / filename)
        except FileNotFoundError:
            return None  # vanished while we looked
        size = st.st_size if size is None else size
        parsed_when = st.st_mtime if parsed_when is None else parsed_when
    return (parsed_when, base, in_new, filename, size, letters)
