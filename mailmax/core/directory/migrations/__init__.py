"""Versioned schema migrations of the directory (alembic, driven from code).

The scripts live in ``versions/``; the database records its version in ``alembic_version``.
MailMax runs them itself (:func:`upgrade`) on an open connection, inside the caller's transaction,
so an upgrade is all or nothing. Maintainers add a step with
``alembic -x ... revision`` or by copying the newest script and bumping its revision ids.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPT_LOCATION = "mailmax.core.directory:migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic configuration for the directory's scripts, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest schema version."""
    current_head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_head is not None
    return current_head


@functools.cache
def _versions() -> tuple[str, ...]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return tuple(script.revision for script in reversed(list(scripts.walk_revisions())))


def versions() -> list[str]:
    """Every schema version, oldest first."""
    return list(_versions())


def current(connection: sa.Connection) -> str:
    """The version the database is at ("" when it has never been migrated)."""
    return MigrationContext.configure(connection).get_current_revision() or ""


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``connection`` to ``revision`` (in its transaction)."""
    command.upgrade(alembic_config(connection), revision)
