"""The first build of a big folder's index, finished behind the SELECT that asked for it.

Building the index of a folder of many thousand messages is mostly writing rows and indexes.
Everything a SELECT reports is known before that: once the listing is parsed and the UIDs are
given out, :class:`FirstBuild` hands :class:`EarlyFacts` to the waiting caller and a thread of
its own writes the rows and commits. Until then every use of the index connection by another
thread waits for the commit (:attr:`FirstBuild.conn`), so nobody sees a half-built index; other
connections wait for the write lock as they would for any writer.

A crash before the commit breaks no promise: the first build is not durable anyway, and the
next one gives the same messages the same UIDs (arrival order), under the same UIDVALIDITY when
the schema's earlier commit survived, else under a new one (clients then resynchronise).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from mailmax.core.store.errors import StoreError
from mailmax.core.store.scan import BULK_ROWS, DiskSync


@dataclass(frozen=True, slots=True)
class EarlyFacts:
    """A folder as its first index build leaves it, known before the rows are written."""

    uidvalidity: int
    uidnext: int
    modseq: int
    count: int
    #: The sequence number of the first message without ``\\Seen`` (None when all are seen).
    first_unseen_position: int | None


class FirstBuild(DiskSync):
    """Mixed into :class:`~mailmax.core.store.index.FolderIndex`: first builds in a thread."""

    _conn: sqlite3.Connection
    path: object

    def _init_first_build(self) -> None:
        self._builder: threading.Thread | None = None
        self._built = threading.Event()
        self._built.set()
        self._build_error: BaseException | None = None
        self._announced: threading.Event | None = None
        #: Set while a first build announced early is still being written.
        self.early: EarlyFacts | None = None

    @property
    def conn(self) -> sqlite3.Connection:  # type: ignore[override]
        """The index connection; waits for a first build still being written elsewhere."""
        builder = self._builder
        if builder is not None and builder is not threading.current_thread():
            self.wait_built()
        return self._conn

    @conn.setter
    def conn(self, value: sqlite3.Connection) -> None:
        self._conn = value

    def wait_built(self) -> None:
        """Wait until a first build running in the background is committed; raise if it failed."""
        self._built.wait()
        if self._build_error is not None:
            raise StoreError(f"index {self.path} could not be built: {self._build_error}")
        self._builder = None
        self.early = None

    def sync(self, force: bool = False, known: dict[str, tuple[int, str]] | None = None) -> bool:
        """See :meth:`DiskSync.sync`; a first build runs in a thread of its own."""
        if force or known or self._builder is not None or not self._first_build_ahead():
            return super().sync(force, known)
        announced = threading.Event()
        outcome: list[bool] = []

        def build() -> None:
            try:
                outcome.append(DiskSync.sync(self))
            except BaseException as exc:  # handed to whoever uses the index next
                self._build_error = exc
            finally:
                self._announced = None
                self._built.set()
                announced.set()

        self._announced = announced
        self._built.clear()
        self._builder = threading.Thread(target=build, name="mailmax-index-build", daemon=True)
        self._builder.start()
        announced.wait()
        if self.early is not None:
            return True
        self.wait_built()  # finished (or failed) without announcing anything
        return outcome[0]

    def _first_build_ahead(self) -> bool:
        """True when the index has never had rows (a new index)."""
        conn = self._conn
        uidnext = conn.execute("SELECT uidnext FROM state").fetchone()[0]
        return uidnext == 1 and not conn.execute("SELECT 1 FROM messages LIMIT 1").fetchone()

    def _announce(self, rows: list[tuple], modseq: int) -> None:
        """Hand the facts of a big first build to the waiting caller (rows in UID order).

        Messages in ``new/`` are not announced: a SELECT moves them, which needs their rows.
        """
        announced = self._announced
        if announced is None or threading.current_thread() is not self._builder:
            return
        if len(rows) < BULK_ROWS or any(row[3] for row in rows):
            return
        uidvalidity = self._conn.execute("SELECT uidvalidity FROM state").fetchone()[0]
        unseen = next((at for at, row in enumerate(rows, 1) if "S" not in row[6]), None)
        self.early = EarlyFacts(uidvalidity, rows[-1][0] + 1, modseq, len(rows), unseen)
        announced.set()
