"""The access rules table and the SQL that reads and changes it (blocking: run it in a
transaction).

Every function takes a SQLAlchemy connection, so the same code serves the server (through
``context.transaction``) and ``mailmax access`` (through the directory's engine), on SQLite and
PostgreSQL alike. Each list (system-wide: ``listener`` empty; or one listening address) is kept
numbered 1, 2, 3 ... in the order its rules are tried.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mailmax.plugins.access.rules import Rule

metadata = sa.MetaData()
rules = sa.Table(
    "access_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("listener", sa.String(64), nullable=False, server_default=""),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("pattern", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("flags", sa.String(200), nullable=False, server_default=""),
    sa.Column("comment", sa.String(500), nullable=False, server_default=""),
    sa.UniqueConstraint("listener", "pattern", name="uq_access_rules"),
)

#: Most rules one list may hold (every connection walks the lists).
MAX_RULES = 10_000


def _rule(row: Any) -> Rule:
    return Rule(
        id=row.id,
        scope="listener" if row.listener else "system",
        listener=row.listener,
        position=row.position,
        pattern=row.pattern,
        kind=row.kind,
        flags=tuple(flag for flag in row.flags.split(",") if flag),
        comment=row.comment,
    )


def all_rules(connection: sa.Connection) -> list[Rule]:
    """Every rule of every list."""
    query = sa.select(rules).order_by(rules.c.listener, rules.c.position, rules.c.id)
    return [_rule(row) for row in connection.execute(query)]


def listing(connection: sa.Connection, listener: str) -> list[Rule]:
    """The rules of one list (``""``: the system-wide one), in the order they are tried."""
    query = (
        sa.select(rules).where(rules.c.listener == listener).order_by(rules.c.position, rules.c.id)
    )
    return [_rule(row) for row in connection.execute(query)]


def find(connection: sa.Connection, listener: str, pattern: str) -> Rule | None:
    """The rule for ``pattern`` in the list of ``listener``, or None."""
    row = connection.execute(
        sa.select(rules).where(rules.c.listener == listener, rules.c.pattern == pattern)
    ).first()
    return None if row is None else _rule(row)


def _renumber(connection: sa.Connection, listener: str, order: list[int]) -> None:
    for position, rule_id in enumerate(order, start=1):
        connection.execute(sa.update(rules).where(rules.c.id == rule_id).values(position=position))


def add(
    connection: sa.Connection,
    listener: str,
    pattern: str,
    kind: str,
    flags: tuple[str, ...],
    comment: str,
    position: int | None = None,
) -> tuple[Rule, bool]:
    """Add a rule at ``position`` (1 = tried first; None: last), or change the rule the list
    has for ``pattern`` (keeping its place unless ``position`` is given); ``(rule, added)``."""
    current = listing(connection, listener)
    existing = next((r for r in current if r.pattern == pattern), None)
    values = {"kind": kind, "flags": ",".join(flags), "comment": comment[:500]}
    if existing is None:
        if len(current) >= MAX_RULES:
            raise ValueError(f"a list holds at most {MAX_RULES} rules")
        result = connection.execute(
            sa.insert(rules).values(
                listener=listener, pattern=pattern, position=len(current) + 1, **values
            )
        )
        rule_id = result.inserted_primary_key[0]
        order = [r.id for r in current] + [rule_id]
    else:
        connection.execute(sa.update(rules).where(rules.c.id == existing.id).values(**values))
        rule_id = existing.id
        order = [r.id for r in current]
    if position is not None:
        order.remove(rule_id)
        order.insert(max(0, min(position - 1, len(order))), rule_id)
    _renumber(connection, listener, order)
    rule = find(connection, listener, pattern)
    assert rule is not None
    return rule, existing is None


def move(connection: sa.Connection, listener: str, pattern: str, position: int) -> Rule | None:
    """Move the rule for ``pattern`` to ``position`` (1 = tried first; past the end: last);
    the rule moved, or None when the list has no such rule."""
    current = listing(connection, listener)
    existing = next((r for r in current if r.pattern == pattern), None)
    if existing is None:
        return None
    order = [r.id for r in current if r.id != existing.id]
    order.insert(max(0, min(position - 1, len(order))), existing.id)
    _renumber(connection, listener, order)
    return find(connection, listener, pattern)


def delete(connection: sa.Connection, listener: str, pattern: str) -> Rule | None:
    """Delete the rule for ``pattern``; the rule deleted, or None when there was none."""
    existing = find(connection, listener, pattern)
    if existing is None:
        return None
    connection.execute(sa.delete(rules).where(rules.c.id == existing.id))
    _renumber(connection, listener, [r.id for r in listing(connection, listener)])
    return existing
