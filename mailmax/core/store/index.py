"""The per-folder index: a SQLite file (WAL mode) beside each Maildir folder.

It maps UIDs to message files and keeps what IMAP needs without reading messages: size,
arrival time, flags (the Maildir info letters, mirrored) and keywords (only here). The
Maildir stays the truth: :meth:`FolderIndex.sync` (:mod:`mailmax.core.store.scan`) rescans a
directory only when its modification time changed, so a sync of an unchanged folder costs two
``stat`` calls.

A missing index is built from the Maildir with a new UIDVALIDITY; a damaged one is moved
aside and rebuilt, keeping UIDVALIDITY and UIDs when enough of it can still be read. Every
change bumps a modification sequence, and expunged UIDs are remembered, so other sessions on
the same folder can find out what changed since they last looked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from twisted.logger import Logger

from mailmax.core.store.errors import StoreError
from mailmax.core.store.firstbuild import FirstBuild
from mailmax.core.store.names import flags_from_letters, letters_for
from mailmax.core.store.scan import BASE_INDEX, DIRTY, SECONDARY_INDEXES

log = Logger(namespace="mailmax.store")

INDEX_NAME = "mailmax.index"
UIDVALIDITY_FILE = "mailmax.uidvalidity"
#: 3: the unique index of ``base`` is a named index (version 2 and older: a UNIQUE column),
#: so that a first build can make it after the rows, like the secondary indexes.
SCHEMA_VERSION = 3
#: Expunge records older than this are dropped (sessions idle longer resynchronise fully).
EXPUNGED_KEEP_SECONDS = 7 * 86400

_SCHEMA = (
    """
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    new_mtime INTEGER NOT NULL,
    cur_mtime INTEGER NOT NULL
);
CREATE TABLE messages (
    uid INTEGER PRIMARY KEY,
    base TEXT NOT NULL,
    filename TEXT NOT NULL,
    in_new INTEGER NOT NULL,
    size INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    letters TEXT NOT NULL,
    keywords TEXT NOT NULL DEFAULT '',
    modseq INTEGER NOT NULL
);
CREATE TABLE expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX expunged_modseq ON expunged (modseq);
CREATE TABLE keywords (name TEXT PRIMARY KEY);
CREATE TABLE recent (uid INTEGER PRIMARY KEY);
"""
    + f"CREATE UNIQUE INDEX {BASE_INDEX} ON messages (base);\n"
    + "".join(f"CREATE INDEX {name} {definition};\n" for name, definition in SECONDARY_INDEXES)
)
#: Upgrades from older schema versions that keep every row: version -> statements.
#: (Version 2 files keep their UNIQUE column, which does what the index of version 3 does.)
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE IF NOT EXISTS recent (uid INTEGER PRIMARY KEY)",),
    2: (),
}

#: SQLite result codes that mean "try later", not "the file is damaged".
_TRANSIENT = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY"}
_TRANSIENT_PREFIXES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN")

COLUMNS = "uid, base, filename, in_new, size, internaldate, letters, keywords, modseq"


@dataclass(frozen=True, slots=True)
class Row:
    """One message row of the index."""

    uid: int
    base: str
    filename: str
    in_new: bool
    size: int
    internaldate: float
    letters: str
    keywords: str
    modseq: int

    @property
    def subdir(self) -> str:
        """``new`` or ``cur``."""
        return "new" if self.in_new else "cur"


def _row(values: tuple) -> Row:
    uid, base, filename, in_new, size, internaldate, letters, keywords, modseq = values
    return Row(uid, base, filename, bool(in_new), size, internaldate, letters, keywords, modseq)


def next_uidvalidity(root: Path) -> int:
    """A UIDVALIDITY never handed out before in this mailbox (time-based, strictly growing)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(root / UIDVALIDITY_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).strip()
        last = int(raw) if raw.isdigit() else 0
        value = max(int(time.time()), last + 1) & 0xFFFFFFFF or 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % value)
        return value
    finally:
        os.close(fd)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _TRANSIENT or name.startswith(_TRANSIENT_PREFIXES):
        return False
    return "locked" not in str(exc)


@dataclass(slots=True)
class _Salvage:
    uidvalidity: int
    uidnext: int
    known: dict[str, tuple[int, str]]  # base -> (uid, keywords)


class FolderIndex(FirstBuild):
    """The index of one Maildir folder (``folder_dir`` holds ``cur/new/tmp``)."""

    def __init__(self, folder_dir: Path, root: Path, *, fsync: bool = True) -> None:
        self.dir = Path(folder_dir)
        self.root = Path(root)
        self.path = self.dir / INDEX_NAME
        self.fsync = fsync
        self._modseq_in_txn: int | None = None
        self._closed = False
        self._init_first_build()
        self.conn = self._open()

    # ------------------------------------------------------------------ opening
    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():  # mail metadata: readable by the owner only
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync_level()}")
        return conn

    def _sync_level(self, durable: bool = False) -> str:
        """The ``synchronous`` setting: commits that hand out UIDs are synced to disk.

        Everything else is rebuilt from the Maildir, which stays the truth: in WAL mode
        ``NORMAL`` may lose the last commits in a power failure but never damages the file.
        """
        if not self.fsync:
            return "OFF"
        return "FULL" if durable else "NORMAL"

    def _open(self) -> sqlite3.Connection:
        salvage: _Salvage | None = None
        try:
            conn = self._connect()
            try:
                if self._prepare(conn):
                    return conn
            except BaseException:
                conn.close()
                raise
            conn.close()
            salvage = self._salvage()
            reason = "it was written by another schema version"
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise StoreError(f"index {self.path} is unavailable: {exc}") from exc
            salvage = self._salvage()
            reason = f"it is damaged ({exc})"
        kept = "keeping UIDVALIDITY and UIDs" if salvage else "with a new UIDVALIDITY"
        log.warn(
            "rebuilding {path} {kept}: {reason}", path=str(self.path), kept=kept, reason=reason
        )
        self._move_aside()
        conn = self._connect()
        self._prepare(conn, salvage)
        return conn

    def _prepare(self, conn: sqlite3.Connection, salvage: _Salvage | None = None) -> bool:
        """Create the schema when the file is new; False when it has another version."""
        version = self._version(conn)
        if version == SCHEMA_VERSION:
            return True
        if version in _UPGRADES:
            return self._upgrade(conn)
        if version is not None:
            return False
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._version(conn) is None:  # another session may have just created it
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                uidvalidity = salvage.uidvalidity if salvage else next_uidvalidity(self.root)
                uidnext = salvage.uidnext if salvage else 1
                conn.execute(
                    "INSERT INTO state VALUES (1, ?, ?, ?, 1, ?, ?)",
                    (SCHEMA_VERSION, uidvalidity, uidnext, DIRTY, DIRTY),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if salvage:
            self.conn = conn
            self.sync(force=True, known=salvage.known)
        return True

    def _upgrade(self, conn: sqlite3.Connection) -> bool:
        """Bring an index of an older schema version up to date, keeping every row."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(conn)  # another session may have upgraded it meanwhile
            if version in _UPGRADES:
                for statement in _UPGRADES[version]:
                    conn.execute(statement)
                conn.execute("UPDATE state SET version = ? WHERE id = 1", (SCHEMA_VERSION,))
                version = SCHEMA_VERSION
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return version == SCHEMA_VERSION

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int | None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'state'"
        ).fetchone()
        if not exists:
            return None
        row = conn.execute("SELECT version FROM state WHERE id = 1").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("the state row is missing")
        return int(row[0])

    def _salvage(self) -> _Salvage | None:
        """Whatever UID information can still be read from a damaged or old index."""
        try:
            uri = f"file:{self.path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as old:
                state = old.execute("SELECT uidvalidity, uidnext FROM state").fetchone()
                known: dict[str, tuple[int, str]] = {}
                for uid, base, keywords in old.execute("SELECT uid, base, keywords FROM messages"):
                    known[str(base)] = (int(uid), str(keywords or ""))
        except (sqlite3.DatabaseError, TypeError, ValueError):
            return None
        if not state or not all(isinstance(v, int) and v > 0 for v in state):
            return None
        uidvalidity, uidnext = state
        if any(uid >= uidnext for uid, _ in known.values()):
            return None
        if len({uid for uid, _ in known.values()}) != len(known):
            return None
        return _Salvage(uidvalidity, uidnext, known)

    def _move_aside(self) -> None:
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        if self.path.exists():
            os.replace(self.path, self.dir / (INDEX_NAME + ".damaged"))

    def close(self) -> None:
        """Close the database connection.

        Closing the last connection of the process checkpoints the WAL into the database
        and syncs it: callers on a latency path close in the background.
        """
        if self._closed:
            return
        self._closed = True
        self._built.wait()  # a first build still being written
        self._conn.close()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (nested calls join the outer one).

        ``durable``: the commit reaches the disk before this returns (use it when the
        transaction hands out UIDs, which must never be handed out twice).
        """
        if self.conn.in_transaction:
            yield self.conn
            return
        durable = durable and self.fsync
        if durable:
            self.conn.execute(f"PRAGMA synchronous={self._sync_level(True)}")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self._modseq_in_txn = None
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        finally:
            self._modseq_in_txn = None
            if durable:
                self.conn.execute(f"PRAGMA synchronous={self._sync_level()}")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same state (joins an open one)."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def bump_modseq(self) -> int:
        """The modification sequence of the current write transaction (allocated once)."""
        if self._modseq_in_txn is None:
            self.conn.execute("UPDATE state SET modseq = modseq + 1 WHERE id = 1")
            self._modseq_in_txn = self.conn.execute("SELECT modseq FROM state").fetchone()[0]
        return self._modseq_in_txn

    @property
    def txn_modseq(self) -> int | None:
        """The modification sequence the current write transaction changed rows at, or None
        when it has changed nothing so far."""
        return self._modseq_in_txn

    # ------------------------------------------------------------------ reading
    def state(self) -> tuple[int, int, int]:
        """``(uidvalidity, uidnext, modseq)``."""
        return self.conn.execute("SELECT uidvalidity, uidnext, modseq FROM state").fetchone()

    def count(self, below: int | None = None) -> int:
        """Messages with a UID below ``below`` (all when None)."""
        if below is None:
            return self.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        return self.conn.execute(
            "SELECT count(*) FROM messages WHERE uid < ?", (below,)
        ).fetchone()[0]

    def count_from(self, start: int) -> int:
        """Messages with a UID of ``start`` or more."""
        return self.conn.execute(
            "SELECT count(*) FROM messages WHERE uid >= ?", (start,)
        ).fetchone()[0]

    def rows(self, start: int = 1, below: int | None = None) -> list[Row]:
        """Rows with ``start <= uid < below`` in UID order."""
        limit = below if below is not None else 1 << 62
        cursor = self.conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE uid >= ? AND uid < ? ORDER BY uid",
            (start, limit),
        )
        return [_row(values) for values in cursor]

    def row(self, uid: int) -> Row | None:
        """One row by UID."""
        values = self.conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE uid = ?", (uid,)
        ).fetchone()
        return _row(values) if values else None

    def row_by_base(self, base: str) -> Row | None:
        """One row by the unique part of its file name."""
        values = self.conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE base = ?", (base,)
        ).fetchone()
        return _row(values) if values else None

    def uids_where(self, condition: str, below: int) -> list[int]:
        """UIDs (below ``below``) matching one of the indexed conditions."""
        where = {
            "unseen": "instr(letters, 'S') = 0",
            "deleted": "instr(letters, 'T') > 0",
            "new": "in_new = 1",
        }[condition]
        cursor = self.conn.execute(
            f"SELECT uid FROM messages WHERE {where} AND uid < ? ORDER BY uid", (below,)
        )
        return [uid for (uid,) in cursor]

    def count_where(self, condition: str, below: int) -> int:
        """How many UIDs (below ``below``) match an indexed condition."""
        where = {
            "unseen": "instr(letters, 'S') = 0",
            "deleted": "instr(letters, 'T') > 0",
            "new": "in_new = 1",
        }[condition]
        return self.conn.execute(
            f"SELECT count(*) FROM messages WHERE {where} AND uid < ?", (below,)
        ).fetchone()[0]

    def first_unseen(self, below: int) -> int | None:
        """The lowest UID without ``S``."""
        row = self.conn.execute(
            "SELECT min(uid) FROM messages WHERE instr(letters, 'S') = 0 AND uid < ?", (below,)
        ).fetchone()
        return row[0] if row else None

    def changed_since(self, modseq: int, below: int, skip: Iterable[int] = ()) -> list[Row]:
        """Rows (below ``below``) changed after ``modseq``, except by the ``skip`` sequences."""
        skip = sorted(skip)[-200:]
        exclude = f" AND modseq NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        # "+uid": neither the bound on uid nor the order may lead SQLite to walk the whole
        # table in uid order on every refresh of a large folder; the modseq index finds the
        # few rows that changed, and they are sorted afterwards
        cursor = self.conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE modseq > ? AND +uid < ?{exclude} ORDER BY +uid",
            (modseq, below, *skip),
        )
        return [_row(values) for values in cursor]

    def rows_for(self, uids: list[int]) -> dict[int, Row]:
        """The rows of ``uids`` (sorted ascending) that exist."""
        if not uids:
            return {}
        if len(uids) > 200:
            wanted = set(uids)
            return {r.uid: r for r in self.rows(uids[0], uids[-1] + 1) if r.uid in wanted}
        marks = ", ".join("?" * len(uids))
        cursor = self.conn.execute(f"SELECT {COLUMNS} FROM messages WHERE uid IN ({marks})", uids)
        return {values[0]: _row(values) for values in cursor}

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after ``modseq``."""
        cursor = self.conn.execute(
            "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,)
        )
        return [uid for (uid,) in cursor]

    def keywords(self) -> list[str]:
        """Every keyword used in this folder."""
        return [name for (name,) in self.conn.execute("SELECT name FROM keywords ORDER BY name")]

    def total_size(self) -> int:
        """Bytes of all messages."""
        return self.conn.execute("SELECT coalesce(sum(size), 0) FROM messages").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def note_keywords(self, keywords: Iterable[str]) -> None:
        """Remember keywords for :meth:`keywords` (inside a write transaction)."""
        self.conn.executemany("INSERT OR IGNORE INTO keywords VALUES (?)", [(k,) for k in keywords])

    def insert(self, rows: list[Row]) -> None:
        """Insert new rows (their UIDs below the new uidnext), inside a write transaction."""
        self.insert_rows(
            [
                (
                    r.uid,
                    r.base,
                    r.filename,
                    int(r.in_new),
                    r.size,
                    r.internaldate,
                    r.letters,
                    r.keywords,
                    r.modseq,
                )
                for r in rows
            ]
        )

    def insert_rows(self, rows: list[tuple]) -> None:
        """Insert row tuples in column order (:data:`COLUMNS`), inside a write transaction."""
        if not rows:
            return
        self.conn.executemany(
            f"INSERT INTO messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        top = max(map(itemgetter(0), rows)) + 1
        self.conn.execute("UPDATE state SET uidnext = max(uidnext, ?) WHERE id = 1", (top,))

    def allocate_uids(self, count: int) -> int:
        """Reserve ``count`` UIDs; return the first (inside a write transaction)."""
        first = self.conn.execute("SELECT uidnext FROM state").fetchone()[0]
        self.conn.execute("UPDATE state SET uidnext = ? WHERE id = 1", (first + count,))
        return first

    def update_file(
        self, uid: int, filename: str, in_new: bool, letters: str, keywords: str
    ) -> None:
        """Record a renamed file and its flags (inside a write transaction)."""
        self.conn.execute(
            "UPDATE messages SET filename = ?, in_new = ?, letters = ?, keywords = ?, modseq = ? "
            "WHERE uid = ?",
            (filename, int(in_new), letters, keywords, self.bump_modseq(), uid),
        )

    def update_files(self, changes: list[tuple[str, int, str, str, int]]) -> None:
        """:meth:`update_file` for many messages: ``(filename, in_new, letters, keywords,
        uid)`` each (inside a write transaction)."""
        if not changes:
            return
        modseq = self.bump_modseq()
        self.conn.executemany(
            "UPDATE messages SET filename = ?, in_new = ?, letters = ?, keywords = ?, "
            f"modseq = {int(modseq)} WHERE uid = ?",
            changes,
        )

    def delete(self, uids: list[int]) -> None:
        """Forget expunged messages and remember that they went (inside a write transaction)."""
        if not uids:
            return
        modseq = self.bump_modseq()
        now = time.time()
        self.conn.executemany("DELETE FROM messages WHERE uid = ?", [(u,) for u in uids])
        self.conn.executemany("DELETE FROM recent WHERE uid = ?", [(u,) for u in uids])
        self.conn.executemany(
            "INSERT OR REPLACE INTO expunged VALUES (?, ?, ?)", [(u, modseq, now) for u in uids]
        )
        self.conn.execute("DELETE FROM expunged WHERE at < ?", (now - EXPUNGED_KEEP_SECONDS,))

    def mark_recent(self, uids: Iterable[int]) -> None:
        """Make messages that went straight into ``cur/`` recent (inside a write transaction).

        Messages still in ``new/`` are recent anyway; these are the ones APPEND and COPY add.
        """
        self.conn.executemany("INSERT OR IGNORE INTO recent VALUES (?)", [(u,) for u in uids])

    def take_recent(self, below: int) -> list[int]:
        """Forget which messages below ``below`` :meth:`mark_recent` made recent; return them."""
        cursor = self.conn.execute("DELETE FROM recent WHERE uid < ? RETURNING uid", (below,))
        return sorted(uid for (uid,) in cursor)

    def marked_recent(self, below: int) -> list[int]:
        """The UIDs below ``below`` that :meth:`mark_recent` made recent."""
        cursor = self.conn.execute("SELECT uid FROM recent WHERE uid < ? ORDER BY uid", (below,))
        return [uid for (uid,) in cursor]


def flags_of(letters: str, keywords: str) -> frozenset[str]:
    """The IMAP flags of a row: system flags from the letters plus keywords."""
    flags = flags_from_letters(letters)
    if keywords:
        flags.update(keywords.split())
    return frozenset(flags)


def split_flags(flags: frozenset[str], keep_letters: str = "") -> tuple[str, str]:
    """``(letters, keywords)`` for ``flags``; unknown info letters in ``keep_letters`` stay."""
    letters = letters_for(flags, keep_letters)
    keywords = " ".join(sorted(f for f in flags if not f.startswith("\\") and f != "$Forwarded"))
    return letters, keywords
