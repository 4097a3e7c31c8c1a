"""Plugin-owned data: the key-value store and a plugin's own tables, on SQLite and PostgreSQL.

Each test runs against a real SQLite file and a real PostgreSQL database (``db_url``), through
``mailmax.testing.PluginHarness``: the server's code path, with a fake clock.
"""

from __future__ import annotations

import shutil
import threading
import types
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.pluginhost import storage
from mailmax.plugin import PluginError, PluginTables, StorageError
from mailmax.testing import PluginHarness
from tests.plugins import tally

TALLY_MIGRATIONS = Path(tally.__file__).parent / "migrations"


@pytest.fixture
def harness(db_url: str, tmp_path: Path):
    h = PluginHarness(tally, data_dir=tmp_path, database_url=db_url)
    yield h
    h.close()


def test_set_get_delete_and_defaults(harness: PluginHarness) -> None:
    """Values are stored as JSON under a key; absent keys give the default."""
    kv = harness.kv
    assert harness.result(kv.get("missing")) is None
    assert harness.result(kv.get("missing", 7)) == 7
    harness.result(kv.set("config", {"limit": 3, "names": ["a", "b"], "on": True}))
    assert harness.result(kv.get("config")) == {"limit": 3, "names": ["a", "b"], "on": True}
    harness.result(kv.set("config", "replaced"))
    assert harness.result(kv.get("config")) == "replaced"
    assert harness.result(kv.delete("config")) is True
    assert harness.result(kv.delete("config")) is False
    assert harness.result(kv.get("config")) is None


def test_namespaces_are_per_plugin(harness: PluginHarness) -> None:
    """Two plugins' keys never meet."""
    harness.result(harness.host.kv("tally").set("shared", 1))
    harness.result(harness.host.kv("other").set("shared", 2))
    assert harness.result(harness.host.kv("tally").get("shared")) == 1
    assert harness.result(harness.host.kv("other").get("shared")) == 2
    assert harness.result(harness.host.kv("other").items()) == {"shared": 2}


def test_items_by_prefix_take_the_prefix_literally(harness: PluginHarness) -> None:
    """List by prefix, sorted, bounded; % and _ in a prefix are plain characters."""
    kv = harness.kv
    for key in ("ip:192.0.2.1", "ip:192.0.2.2", "ip%x", "ipXy", "ip_z", "user:ann"):
        harness.result(kv.set(key, key.upper()))
    assert list(harness.result(kv.items("ip:"))) == ["ip:192.0.2.1", "ip:192.0.2.2"]
    assert harness.result(kv.items("ip%")) == {"ip%x": "IP%X"}
    assert harness.result(kv.items("ip_")) == {"ip_z": "IP_Z"}
    assert len(harness.result(kv.items(limit=2))) == 2
    assert len(harness.result(kv.items())) == 6


def test_increment_is_atomic_and_typed(harness: PluginHarness) -> None:
    """Increment adds to an integer (absent counts as 0); a non-integer is refused."""
    kv = harness.kv
    assert harness.result(kv.increment("hits")) == 1
    assert harness.result(kv.increment("hits", 5)) == 6
    assert harness.result(kv.get("hits")) == 6
    harness.result(kv.set("name", "ann"))
    with pytest.raises(StorageError, match="not an integer"):
        harness.result(kv.increment("name"))


def test_concurrent_increments_are_never_lost(db_url: str) -> None:
    """Increments from several threads at once (as from several nodes) all count."""
    with SQLDirectory.open(db_url) as directory:

        def add(count: int) -> None:
            for _ in range(count):
                storage.kv_increment(directory.engine, "tally", "hits", 1, 0.0, None)

        threads = [threading.Thread(target=add, args=(25,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert storage.kv_get(directory.engine, "tally", "hits", 0.0) == (True, 100)


def test_expiry_follows_the_clock_and_expired_entries_are_purged(
    harness: PluginHarness, db_url: str
) -> None:
    """A ttl expires on the reactor's clock; the host purges expired rows every minute."""
    kv = harness.kv
    harness.result(kv.set("short", "x", ttl=10))
    harness.result(kv.set("forever", "y"))
    harness.result(kv.increment("window", ttl=30))
    harness.advance(5)
    assert harness.result(kv.get("short")) == "x"
    assert harness.result(kv.increment("window")) == 2  # keeps its expiry
    harness.advance(6)
    assert harness.result(kv.get("short")) is None
    assert harness.result(kv.items()) == {"forever": "y", "window": 2}
    harness.advance(20)
    assert harness.result(kv.increment("window")) == 1  # a new window
    with harness.directory.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM plugin_kv ORDER BY key")).scalars().all()
    assert keys == ["forever", "short", "window"]  # expired, not yet purged
    harness.advance(60)  # the purge task runs
    with harness.directory.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM plugin_kv ORDER BY key")).scalars().all()
    assert keys == ["forever", "window"]


def test_bad_keys_and_values_are_refused_with_a_reason(harness: PluginHarness) -> None:
    """Keys of 1-200 characters, JSON values up to 64 KiB; nothing else is stored."""
    kv = harness.kv
    with pytest.raises(StorageError, match="1 to 200 characters"):
        kv.set("k" * 201, 1)
    with pytest.raises(StorageError, match="1 to 200 characters"):
        kv.get("")
    with pytest.raises(StorageError, match="JSON"):
        kv.set("key", object())
    with pytest.raises(StorageError, match="over 65536 bytes"):
        kv.set("key", "x" * 70_000)
    with pytest.raises(StorageError, match="ttl must be a positive"):
        kv.set("key", 1, ttl=0)
    assert harness.result(kv.items()) == {}


def test_tables_are_created_by_the_plugins_migrations(harness: PluginHarness) -> None:
    """TABLES are migrated to the newest script, versioned in the plugin's own table."""
    with harness.directory.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("tally_reports")}
        assert storage.tables_version(conn, "tally") == "0002"
    assert {"tally_reports", "tally_alembic_version", "plugin_kv", "users"} <= names
    assert columns == {"id", "messages", "label"}

    def insert_and_count(connection: sa.Connection) -> int:
        connection.execute(sa.insert(tally.reports).values(messages=3, label="x"))
        return connection.execute(sa.select(sa.func.count()).select_from(tally.reports)).scalar()

    context = harness.context
    assert context.tables is tally.TABLES
    assert harness.result(context.transaction(insert_and_count, write=True)) == 1


def test_an_older_plugin_schema_is_upgraded_keeping_its_rows(db_url: str, tmp_path: Path) -> None:
    """A database made by the plugin's first version is upgraded in place."""
    first = tmp_path / "first"
    (first / "versions").mkdir(parents=True)
    shutil.copy(TALLY_MIGRATIONS / "versions" / "0001_reports.py", first / "versions")
    old_tables = PluginTables(sa.MetaData(), first)
    with SQLDirectory.open(db_url) as directory:
        assert storage.migrate_tables(directory.engine, "tally", tally, old_tables) == "0001"
        with directory.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO tally_reports (messages) VALUES (41)"))
    harness = PluginHarness(tally, data_dir=tmp_path, database_url=db_url)
    try:
        columns = sa.select(tally.reports.c.messages, tally.reports.c.label)
        rows = harness.result(harness.context.transaction(lambda c: c.execute(columns).all()))
        assert [tuple(r) for r in rows] == [(41, "")]
    finally:
        harness.close()


def test_a_schema_newer_than_the_plugin_is_refused(db_url: str, tmp_path: Path) -> None:
    """Tables at a version the plugin's scripts do not know stop the load, saying why."""
    PluginHarness(tally, data_dir=tmp_path, database_url=db_url).close()
    with SQLDirectory.open(db_url) as directory, directory.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tally_alembic_version SET version_num = '0099'"))
    with pytest.raises(PluginError, match="at version 0099, which its code does not know"):
        PluginHarness(tally, data_dir=tmp_path, database_url=db_url)


def test_table_names_must_carry_the_plugin_name(tmp_path: Path) -> None:
    """A table outside the plugin's name space is refused when the plugin loads."""
    metadata = sa.MetaData()
    sa.Table("users2", metadata, sa.Column("id", sa.Integer, primary_key=True))
    module = types.ModuleType("squatter")
    module.TABLES = PluginTables(metadata, TALLY_MIGRATIONS)
    with pytest.raises(PluginError, match="table names must start with 'squatter_': users2"):
        PluginHarness(module, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'd.db'}")


def test_tables_need_a_database(tmp_path: Path) -> None:
    """A plugin with tables in a harness without a database says what is missing."""
    with pytest.raises(PluginError, match="declares tables but there is no directory"):
        PluginHarness(tally, data_dir=tmp_path)
