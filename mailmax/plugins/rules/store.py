"""The rules table and the SQL that reads and changes it (blocking: run it in a transaction).

Every function takes a SQLAlchemy connection, so the same code serves the server (through
``context.transaction``) and ``mailmax rule`` (through the directory's engine), on SQLite and
PostgreSQL alike. A list (system, one domain's, one user's) is ordered by ``position``, 1 first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from mailmax.plugins.rules.model import Rule, load_rule

#: The most rules one list holds.
MAX_RULES = 500

metadata = sa.MetaData()
entries = sa.Table(
    "rules_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scope", sa.String(10), nullable=False),
    sa.Column("scope_value", sa.String(320), nullable=False, server_default=""),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("conditions", sa.Text, nullable=False),
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("changed", sa.Float, nullable=False),
    sa.UniqueConstraint("scope", "scope_value", "name", name="uq_rules_entries"),
)


def _rule(row: Any) -> Rule:
    return load_rule(
        row.scope,
        row.scope_value,
        row.position,
        row.name,
        bool(row.enabled),
        json.loads(row.conditions),
        json.loads(row.actions),
    )


def _of(scope: str, scope_value: str) -> Any:
    return sa.and_(entries.c.scope == scope, entries.c.scope_value == scope_value)


def listing(connection: sa.Connection, scope: str, scope_value: str) -> list[Rule]:
    """The rules of one list, in order."""
    rows = connection.execute(
        sa.select(entries).where(_of(scope, scope_value)).order_by(entries.c.position)
    )
    return [_rule(row) for row in rows]


def everything(connection: sa.Connection) -> list[Rule]:
    """Every rule of every list (system first, then by list and position)."""
    order = sa.case({"system": 0, "domain": 1}, value=entries.c.scope, else_=2)
    rows = connection.execute(
        sa.select(entries).order_by(order, entries.c.scope_value, entries.c.position)
    )
    return [_rule(row) for row in rows]


def lists(
    connection: sa.Connection, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[Rule]]:
    """The enabled rules of each wanted list (missing lists are empty), in one query."""
    keys = list(dict.fromkeys(wanted))
    found: dict[tuple[str, str], list[Rule]] = {key: [] for key in keys}
    if not keys:
        return found
    rows = connection.execute(
        sa.select(entries)
        .where(sa.or_(*(_of(*key) for key in keys)), entries.c.enabled.is_(True))
        .order_by(entries.c.position)
    )
    for row in rows:
        found[(row.scope, row.scope_value)].append(_rule(row))
    return found


def find(connection: sa.Connection, scope: str, scope_value: str, name: str) -> Rule | None:
    """The rule called ``name`` in a list, or None."""
    row = connection.execute(
        sa.select(entries).where(_of(scope, scope_value), entries.c.name == name)
    ).first()
    return None if row is None else _rule(row)


def _renumber(connection: sa.Connection, scope: str, scope_value: str, names: list[str]) -> None:
    # Two passes, so that no two rows share a position between the statements.
    for offset in (100_000, 0):
        for index, name in enumerate(names, start=1):
            connection.execute(
                sa.update(entries)
                .where(_of(scope, scope_value), entries.c.name == name)
                .values(position=index + offset)
            )


def _names(connection: sa.Connection, scope: str, scope_value: str) -> list[str]:
    return [rule.name for rule in listing(connection, scope, scope_value)]


def save(connection: sa.Connection, rule: Rule, *, old_name: str | None = None) -> Rule:
    """Add ``rule`` (at its ``position``; 0 or past the end: last) or, with ``old_name``,
    replace the rule of that name in place. Raises ValueError when the name is taken."""
    names = _names(connection, rule.scope, rule.scope_value)
    taken = rule.name in names and rule.name != old_name
    if taken:
        raise ValueError(f"the {rule.where} list already has a rule called {rule.name!r}")
    if old_name is None and len(names) >= MAX_RULES:
        raise ValueError(f"the {rule.where} list already has {MAX_RULES} rules, the most it holds")
    values = {
        "name": rule.name,
        "enabled": rule.enabled,
        "conditions": json.dumps([c.text() for c in rule.conditions]),
        "actions": json.dumps([a.text() for a in rule.actions]),
        "changed": time.time(),
    }
    if old_name is not None:
        connection.execute(
            sa.update(entries)
            .where(_of(rule.scope, rule.scope_value), entries.c.name == old_name)
            .values(**values)
        )
    else:
        connection.execute(
            sa.insert(entries).values(
                scope=rule.scope,
                scope_value=rule.scope_value,
                position=len(names) + 100_001,
                **values,
            )
        )
        at = rule.position if 0 < rule.position <= len(names) else len(names) + 1
        names.insert(at - 1, rule.name)
        _renumber(connection, rule.scope, rule.scope_value, names)
    saved = find(connection, rule.scope, rule.scope_value, rule.name)
    assert saved is not None
    return saved


def move(connection: sa.Connection, scope: str, scope_value: str, name: str, to: int) -> Rule:
    """Put the rule ``name`` at position ``to`` (1 first; past the end: last)."""
    names = _names(connection, scope, scope_value)
    names.remove(name)
    names.insert(max(0, min(to, len(names) + 1) - 1), name)
    _renumber(connection, scope, scope_value, names)
    moved = find(connection, scope, scope_value, name)
    assert moved is not None
    return moved


def set_enabled(
    connection: sa.Connection, scope: str, scope_value: str, name: str, enabled: bool
) -> None:
    """Switch one rule on or off."""
    connection.execute(
        sa.update(entries)
        .where(_of(scope, scope_value), entries.c.name == name)
        .values(enabled=enabled, changed=time.time())
    )


def delete(connection: sa.Connection, scope: str, scope_value: str, name: str) -> None:
    """Delete one rule; the others close up."""
    connection.execute(sa.delete(entries).where(_of(scope, scope_value), entries.c.name == name))
    _renumber(connection, scope, scope_value, _names(connection, scope, scope_value))
