"""The bans table and the SQL that reads and changes it (blocking: run it in a transaction).

Every function takes a SQLAlchemy connection, so the same code serves the server (through
``context.transaction``) and ``mailmax ban`` (through the directory's engine), on SQLite and
PostgreSQL alike. Other plugins that ban clients (a tarpit) call :func:`add` the same way.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mailmax.plugins.bans.patterns import Ban

metadata = sa.MetaData()
entries = sa.Table(
    "bans_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("pattern", sa.String(320), nullable=False),
    sa.Column("scope", sa.String(10), nullable=False),
    sa.Column("scope_value", sa.String(255), nullable=False, server_default=""),
    sa.Column("cause", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("added", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.UniqueConstraint("kind", "pattern", "scope", "scope_value", name="uq_bans_entries"),
)

#: Why a ban was added.
MANUAL = "manual"
SPAMTRAP = "spamtrap"
TARPIT = "tarpit"

#: Scopes a ban holds in.
SYSTEM = "system"
LISTENER = "listener"
DOMAIN = "domain"


def _ban(row: Any) -> Ban:
    return Ban(
        id=row.id,
        kind=row.kind,
        pattern=row.pattern,
        scope=row.scope,
        scope_value=row.scope_value,
        cause=row.cause,
        reason=row.reason,
        added=row.added,
        expires=row.expires,
    )


def _live(now: float) -> Any:
    return sa.or_(entries.c.expires.is_(None), entries.c.expires > now)


def _longer(expires: float | None, than: float | None) -> bool:
    """Whether an expiry of ``expires`` lasts longer than one of ``than`` (None: forever)."""
    if than is None:
        return False
    return expires is None or expires > than


def _where(kind: str, pattern: str, scope: str, scope_value: str) -> Any:
    return sa.and_(
        entries.c.kind == kind,
        entries.c.pattern == pattern,
        entries.c.scope == scope,
        entries.c.scope_value == scope_value,
    )


def live_bans(connection: sa.Connection, now: float) -> list[Ban]:
    """Every ban that holds at ``now``."""
    rows = connection.execute(sa.select(entries).where(_live(now)).order_by(entries.c.id))
    return [_ban(row) for row in rows]


def find(
    connection: sa.Connection, kind: str, pattern: str, scope: str, scope_value: str
) -> Ban | None:
    """The stored ban with exactly these names (live or expired), or None."""
    row = connection.execute(
        sa.select(entries).where(_where(kind, pattern, scope, scope_value))
    ).first()
    return None if row is None else _ban(row)


def add(
    connection: sa.Connection,
    kind: str,
    pattern: str,
    *,
    scope: str = SYSTEM,
    scope_value: str = "",
    cause: str = MANUAL,
    reason: str = "",
    now: float,
    expires: float | None = None,
    extend_only: bool = False,
) -> tuple[Ban, bool]:
    """Add a ban, or replace the one with the same names; ``(ban, changed)``.

    With ``extend_only`` (automatic bans) a live ban that already lasts as long or longer is
    kept as it is, so a spam-trap hit never shortens a ban an admin set.
    """
    current = find(connection, kind, pattern, scope, scope_value)
    values = {"cause": cause, "reason": reason[:500], "added": now, "expires": expires}
    if current is None:
        connection.execute(
            sa.insert(entries).values(
                kind=kind, pattern=pattern, scope=scope, scope_value=scope_value, **values
            )
        )
    else:
        if extend_only and current.live(now) and not _longer(expires, current.expires):
            return current, False
        connection.execute(sa.update(entries).where(entries.c.id == current.id).values(**values))
    ban = find(connection, kind, pattern, scope, scope_value)
    assert ban is not None
    return ban, True


def delete(
    connection: sa.Connection, kind: str, pattern: str, scope: str, scope_value: str
) -> Ban | None:
    """Delete one ban; the ban deleted, or None when there was none."""
    current = find(connection, kind, pattern, scope, scope_value)
    if current is not None:
        connection.execute(sa.delete(entries).where(entries.c.id == current.id))
    return current


def listing(
    connection: sa.Connection,
    now: float,
    *,
    scope: str | None = None,
    scope_value: str | None = None,
    include_expired: bool = False,
) -> list[Ban]:
    """The bans, in the order they were added; optionally of one scope, or expired ones too."""
    query = sa.select(entries).order_by(entries.c.id)
    if not include_expired:
        query = query.where(_live(now))
    if scope is not None:
        query = query.where(entries.c.scope == scope)
    if scope_value is not None:
        query = query.where(entries.c.scope_value == scope_value)
    return [_ban(row) for row in connection.execute(query)]


def purge(connection: sa.Connection, now: float) -> int:
    """Delete the bans that expired before ``now``; how many."""
    result = connection.execute(
        sa.delete(entries).where(entries.c.expires.is_not(None), entries.c.expires <= now)
    )
    return result.rowcount or 0
