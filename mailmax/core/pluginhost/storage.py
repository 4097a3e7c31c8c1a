"""Plugin-owned data in the directory database: a key-value store and a plugin's own tables.

:class:`KeyValueStore` is one plugin's namespace of the directory's ``plugin_kv`` table: JSON
values under string keys, with an optional expiry measured on the reactor's clock. Its methods
return Deferreds; the SQL runs in the directory's thread pool (the ``run`` callable given).

:class:`PluginTables` is what a plugin declares as ``TABLES``: its SQLAlchemy ``MetaData`` and
a folder of alembic migration scripts (``versions/``). :func:`migrate_tables` upgrades the
plugin's tables to the newest script, recording the version in the plugin's own version table,
the way the directory's schema is upgraded; the server runs it at start and at every reload,
before the new plugin set serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from twisted.internet import defer

from mailmax.core.directory.engine import transaction
from mailmax.core.directory.schema import plugin_kv
from mailmax.core.hooks import PluginError

#: Longest key, in characters.
MAX_KEY_LENGTH = 200
#: Largest value, as JSON text in bytes.
MAX_VALUE_BYTES = 64 * 1024
#: Most entries one :meth:`KeyValueStore.items` call returns.
MAX_ITEMS = 10_000


class StorageError(ValueError):
    """A key, value or table declaration MailMax cannot store."""


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise StorageError(f"a key is a string of 1 to {MAX_KEY_LENGTH} characters, not {key!r}")
    return key


def _encode(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"the value cannot be stored as JSON: {exc}") from None
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise StorageError(f"the value is over {MAX_VALUE_BYTES} bytes as JSON")
    return text


def _live(now: float) -> Any:
    return sa.or_(plugin_kv.c.expires.is_(None), plugin_kv.c.expires > now)


def _upsert(connection: sa.Connection) -> Any:
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(plugin_kv)


# ---------------------------------------------------------------------- blocking SQL
def kv_get(engine: sa.Engine, plugin: str, key: str, now: float) -> tuple[bool, Any]:
    """(found, value) of one live entry."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(plugin_kv.c.value).where(
                plugin_kv.c.plugin == plugin, plugin_kv.c.key == key, _live(now)
            )
        ).first()
    return (False, None) if row is None else (True, json.loads(row.value))


def kv_set(
    engine: sa.Engine, plugin: str, key: str, text: str, now: float, expires: float | None
) -> None:
    """Store ``text`` (JSON) under ``key``, replacing any entry and its expiry."""
    with transaction(engine, write=True, lock=False) as conn:
        statement = _upsert(conn).values(
            plugin=plugin, key=key, value=text, expires=expires, updated=now
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[plugin_kv.c.plugin, plugin_kv.c.key],
                set_={"value": text, "expires": expires, "updated": now},
            )
        )


def kv_delete(engine: sa.Engine, plugin: str, key: str, now: float) -> bool:
    """Delete ``key``; True when a live entry was there."""
    with transaction(engine, write=True, lock=False) as conn:
        result = conn.execute(
            sa.delete(plugin_kv)
            .where(plugin_kv.c.plugin == plugin, plugin_kv.c.key == key)
            .returning(plugin_kv.c.expires)
        ).all()
    return any(expires is None or expires > now for (expires,) in result)


def kv_increment(
    engine: sa.Engine, plugin: str, key: str, by: int, now: float, expires: float | None
) -> int:
    """Add ``by`` to the integer under ``key`` (0 when absent or expired) and return the sum.

    ``expires`` applies when the entry is (re)created; later increments keep its expiry.
    """
    with transaction(engine, write=True, lock=False) as conn:
        conn.execute(
            _upsert(conn)
            .values(plugin=plugin, key=key, value="0", expires=expires, updated=now)
            .on_conflict_do_nothing(index_elements=[plugin_kv.c.plugin, plugin_kv.c.key])
        )
        row = conn.execute(
            sa.select(plugin_kv.c.value, plugin_kv.c.expires)
            .where(plugin_kv.c.plugin == plugin, plugin_kv.c.key == key)
            .with_for_update()
        ).one()
        if row.expires is not None and row.expires <= now:
            current, keep = 0, expires
        else:
            current, keep = json.loads(row.value), row.expires
            if isinstance(current, bool) or not isinstance(current, int):
                raise StorageError(f"{key!r} holds {current!r}, not an integer")
        total = current + by
        conn.execute(
            sa.update(plugin_kv)
            .where(plugin_kv.c.plugin == plugin, plugin_kv.c.key == key)
            .values(value=str(total), expires=keep, updated=now)
        )
    return total


def kv_items(engine: sa.Engine, plugin: str, prefix: str, now: float, limit: int) -> dict[str, Any]:
    """The live entries whose key starts with ``prefix``, by key, at most ``limit``."""
    with transaction(engine) as conn:
        rows = conn.execute(
            sa.select(plugin_kv.c.key, plugin_kv.c.value)
            .where(
                plugin_kv.c.plugin == plugin,
                plugin_kv.c.key.startswith(prefix, autoescape=True),
                _live(now),
            )
            .order_by(plugin_kv.c.key)
            .limit(limit)
        ).all()
    return {row.key: json.loads(row.value) for row in rows}


def kv_purge(engine: sa.Engine, now: float) -> int:
    """Delete every expired entry of every plugin; how many were deleted."""
    with transaction(engine, write=True, lock=False) as conn:
        result = conn.execute(
            sa.delete(plugin_kv).where(plugin_kv.c.expires.is_not(None), plugin_kv.c.expires <= now)
        )
    return result.rowcount or 0


# ---------------------------------------------------------------------- the store
class KeyValueStore:
    """One plugin's key-value entries in the directory; every method returns a Deferred.

    Values are anything JSON can hold (up to 64 KiB as JSON); keys are strings of up to 200
    characters. ``ttl`` (seconds, on the reactor's clock) makes an entry expire: an expired
    entry reads as absent and is purged in the background.
    """

    def __init__(
        self,
        plugin: str,
        engine: Callable[[], sa.Engine],
        run: Callable[..., defer.Deferred[Any]],
        clock: Any,
    ) -> None:
        self.plugin = plugin
        self._engine = engine
        self._run = run
        self._clock = clock

    def _expires(self, ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if ttl <= 0:
            raise StorageError(f"ttl must be a positive number of seconds, not {ttl!r}")
        return self._clock.seconds() + ttl

    def _call(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return self._run(lambda: function(self._engine(), self.plugin, *args))

    def get(self, key: str, default: Any = None) -> defer.Deferred[Any]:
        """The value under ``key``, or ``default`` when there is none (or it expired)."""
        d = self._call(kv_get, _check_key(key), self._clock.seconds())
        return d.addCallback(lambda found: found[1] if found[0] else default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> defer.Deferred[None]:
        """Store ``value`` under ``key`` (replacing it), expiring after ``ttl`` seconds."""
        text = _encode(value)
        now = self._clock.seconds()
        return self._call(kv_set, _check_key(key), text, now, self._expires(ttl))

    def delete(self, key: str) -> defer.Deferred[bool]:
        """Delete ``key``; fires with True when there was a live entry."""
        return self._call(kv_delete, _check_key(key), self._clock.seconds())

    def increment(self, key: str, by: int = 1, ttl: float | None = None) -> defer.Deferred[int]:
        """Add ``by`` to the integer under ``key`` at once (absent counts as 0); the new value.

        ``ttl`` sets the expiry when the entry is created; increments keep it (a window).
        """
        if isinstance(by, bool) or not isinstance(by, int):
            raise StorageError(f"increment by an integer, not {by!r}")
        now = self._clock.seconds()
        return self._call(kv_increment, _check_key(key), by, now, self._expires(ttl))

    def items(self, prefix: str = "", limit: int = 1000) -> defer.Deferred[dict[str, Any]]:
        """The entries whose key starts with ``prefix``, sorted by key, at most ``limit``."""
        if not 0 < limit <= MAX_ITEMS:
            raise StorageError(f"limit must be 1 to {MAX_ITEMS}, not {limit!r}")
        return self._call(kv_items, prefix, self._clock.seconds(), limit)


# ---------------------------------------------------------------------- plugin tables
@dataclass(frozen=True)
class PluginTables:
    """A plugin's own tables: its ``metadata`` and the folder of its alembic migrations.

    ``migrations`` holds a ``versions/`` folder of alembic scripts (``revision``,
    ``down_revision``, ``upgrade()``); a relative path is taken from the plugin's module.
    Every table name starts with the plugin's name and ``_``.
    """

    metadata: sa.MetaData
    migrations: str | Path = "migrations"


def table_prefix(plugin: str) -> str:
    """The prefix every table of ``plugin`` has (``myplugin_``; dots become ``_``)."""
    return re.sub(r"\W", "_", plugin).lower() + "_"


def version_table(plugin: str) -> str:
    """The table recording the schema version of ``plugin``'s tables."""
    return table_prefix(plugin) + "alembic_version"


def tables_of(name: str, module: Any) -> PluginTables | None:
    """The plugin's declared ``TABLES`` (checked), or None."""
    tables = getattr(module, "TABLES", None)
    if tables is None:
        return None
    if not isinstance(tables, PluginTables):
        raise PluginError(f"plugin {name!r}: TABLES must be a mailmax.plugin.PluginTables")
    prefix = table_prefix(name)
    wrong = sorted(t for t in tables.metadata.tables if not t.startswith(prefix))
    if wrong:
        raise PluginError(
            f"plugin {name!r}: table names must start with {prefix!r}: {', '.join(wrong)}"
        )
    return tables


def _scripts(name: str, module: Any, tables: PluginTables) -> tuple[Config, ScriptDirectory]:
    folder = Path(tables.migrations)
    if not folder.is_absolute():
        folder = Path(getattr(module, "__file__", "") or ".").parent / folder
    if not (folder / "versions").is_dir():
        raise PluginError(f"plugin {name!r}: its migrations folder {folder}/versions is missing")
    config = Config()
    config.set_main_option("script_location", str(folder))
    try:
        script = ScriptDirectory.from_config(config)
        script.get_current_head()
    except CommandError as exc:
        raise PluginError(f"plugin {name!r}: its migrations in {folder}: {exc}") from None
    return config, script


def tables_version(connection: sa.Connection, name: str) -> str:
    """The version ``name``'s tables are at in the database ("" before the first migration)."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table(name)})
    return context.get_current_revision() or ""


def migrate_tables(engine: sa.Engine, name: str, module: Any, tables: PluginTables) -> str:
    """Upgrade ``name``'s tables to its newest migration (one transaction); the version.

    Holds the directory's write lock, so servers starting together migrate once. A database
    at a version the plugin's scripts do not know (a newer plugin wrote it) is refused.
    """
    config, script = _scripts(name, module, tables)
    head = script.get_current_head() or ""
    with transaction(engine) as conn:  # the common case, without the write lock
        if tables_version(conn, name) == head:
            return head
    with transaction(engine, write=True) as conn:
        current = tables_version(conn, name)
        if current == head:
            return head
        if current:
            try:
                script.get_revision(current)
            except CommandError:
                raise PluginError(
                    f"plugin {name!r}: its tables are at version {current}, which its code "
                    f"does not know (newest {head}); install the plugin's newer version"
                ) from None

        def upgrade(revision: Any, context: Any) -> Any:
            return script._upgrade_revs("head", revision)

        with EnvironmentContext(config, script, fn=upgrade, destination_rev="head") as env:
            env.configure(
                connection=conn,
                target_metadata=tables.metadata,
                version_table=version_table(name),
                render_as_batch=True,
            )
            with env.begin_transaction():
                env.run_migrations()
    return head
