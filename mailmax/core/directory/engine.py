"""Database engines for the directory: SQLite (WAL, foreign keys, busy timeout) and PostgreSQL.

Write transactions are serialised across processes: SQLite's ``BEGIN IMMEDIATE`` and a
PostgreSQL transaction-level advisory lock. Directory writes are rare (admin changes, login
records), and serialising them keeps checks that span tables -- "an alias may not collide with a
user" -- free of races. Reads never wait for writers (WAL; MVCC).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc

from mailmax.core.directory.errors import AlreadyExists, DirectoryError, DirectoryUnavailable

#: Seconds a SQLite connection waits for another process's write lock.
SQLITE_BUSY_SECONDS = 10
#: Key of the PostgreSQL advisory lock that serialises directory writes.
PG_WRITE_LOCK = 0x4D61696C4D6178  # "MailMax"
_WRITE = "mailmax_write"


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and ``config show``)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``) set up for MailMax."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        raise DirectoryError(
            f"{url!r} is not a database URL; use sqlite:///path/to/mailmax.db "
            "or postgresql://user:password@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _prepare_sqlite_file(parsed.database or "")
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise DirectoryError(
        f"database {backend!r} is not supported; use sqlite:///path/to/mailmax.db "
        "or postgresql://user:password@host/dbname"
    )


def _prepare_sqlite_file(database: str) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        raise DirectoryError(
            f"the folder {str(path.parent)!r} for the directory database does not exist; "
            "create it or fix the database URL"
        )
    # password hashes live here: only the owner may read the file (WAL files inherit this)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode. Switching a new database's mode fails at once, without
    waiting the busy timeout, while another connection opening it holds a lock: retry."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextlib.contextmanager
def transaction(
    engine: sa.Engine, *, write: bool = False, lock: bool = True
) -> Iterator[sa.Connection]:
    """A connection in a transaction, committed at the end (rolled back on an error).

    ``write`` takes the directory's write lock up front (``lock=False`` skips the PostgreSQL
    advisory lock for writes that touch a single user's own rows). Database failures become
    :class:`DirectoryUnavailable`; constraint violations from a race become AlreadyExists.
    """
    try:
        with engine.connect() as connection:
            if write:
                connection.execution_options(**{_WRITE: True})
            with connection.begin():
                if write and lock and engine.dialect.name == "postgresql":
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_WRITE_LOCK}
                    )
                yield connection
    except exc.IntegrityError as error:
        raise AlreadyExists(
            f"the change conflicts with an existing record ({error.orig}); reload and try again"
        ) from error
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise DirectoryUnavailable(
            f"the directory database {engine.url.render_as_string(hide_password=True)} "
            f"cannot be used: {error.orig}"
        ) from error
