"""Versioned schema migrations and database set-up (S5): new databases, upgrades, settings.

Each database test runs against a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher

from mailmax.core.directory import (
    BlankPasswordPolicy,
    DirectoryError,
    DirectoryUnavailable,
    Lookup,
    SQLDirectory,
    migrations,
)
from mailmax.core.directory.engine import make_engine, transaction
from mailmax.core.directory.passwords import hash_password
from mailmax.core.directory.schema import metadata

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_versions_are_ordered() -> None:
    """S5: the schema has numbered versions, oldest first; the newest is the head."""
    assert migrations.versions() == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008",
                                   "0009"]  # fmt: skip
    assert migrations.head() == "0009"


def test_a_new_database_gets_the_newest_schema(db_url: str) -> None:
    """S5: opening an empty database creates every table at the newest version."""
    with SQLDirectory.open(db_url) as directory:
        assert directory.schema_version() == migrations.head()
        with directory.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    assert {table.name for table in metadata.sorted_tables} | {"alembic_version"} == tables


def test_the_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    """S5: schema.py and the migration scripts agree (alembic finds nothing to generate)."""
    with SQLDirectory.open(db_url) as directory, directory.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_migrate_is_idempotent_and_can_wait(db_url: str) -> None:
    """S5: migrate() on a current database changes nothing; open(migrate=False) leaves it."""
    with SQLDirectory.open(db_url, migrate=False) as directory:
        assert directory.schema_version() == ""
        directory.migrate()
        directory.migrate()
        assert directory.schema_version() == migrations.head()


def test_upgrade_from_the_first_version_keeps_the_data(db_url: str, tmp_path: Path) -> None:
    """S5: a database made at version 0001, with data, is upgraded in place on open."""
    engine = make_engine(db_url)
    with transaction(engine, write=True) as conn:
        migrations.upgrade(conn, "0001")
        conn.exec_driver_sql(
            "INSERT INTO domains (id, name, mail_dir, type, delivery_host, backup_priority, "
            "home_node, default_box_mb, max_users, session_send_mb, session_send_messages, "
            "max_message_size, catch_all, monitor, blank_password, over_limit_notice, "
            "over_limit_threshold, created, updated) VALUES (1, 'example.com', '/srv/ex', "
            "'normal', '', 0, '', 0, 0, 0, 0, 0, '', '', 'system', 'none', 0, 1, 1)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO users (domain_id, name, first_name, last_name, account_type, "
                "smtp_auth_disabled, disk_limit_mb, daily_send_messages, daily_send_mb, "
                "daily_limits_enabled, max_message_size, virus_check, password_hash, "
                "password_clear, keep_clear, created, updated) VALUES (1, 'bob', 'Bob', '', "
                "'normal', false, 0, 0, 0, false, 0, true, :hash, NULL, false, 1, 1)"
            ),
            {"hash": hash_password("bobpw", FAST)},
        )
    engine.dispose()

    with SQLDirectory.open(db_url, migrate=False, password_hasher=FAST) as old:
        assert old.schema_version() == "0001"
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as upgraded:
        assert upgraded.schema_version() == migrations.head()
        assert upgraded.get_user("bob@example.com").first_name == "Bob"
        assert upgraded.authenticate("bob@example.com", "bobpw") is not None
        assert upgraded.lookup_recipient("bob@example.com").status is Lookup.USER
        upgraded.set_forward("bob@example.com", ["x@remote.org"])  # a table of version 0002
        upgraded.record_login("bob@example.com", "imap", "192.0.2.1")
        assert upgraded.last_login("bob@example.com")[0] == "imap"


def test_virus_check_off_becomes_an_antivirus_override_and_only_that(
    db_url: str, tmp_path: Path
) -> None:
    """V4: upgrading to 0004 switches antivirus off for the users stored with virus_check off;
    users left at the default get no override (the domain and system switches stay in force)."""
    engine = make_engine(db_url)
    with transaction(engine, write=True) as conn:
        migrations.upgrade(conn, "0003")
        conn.exec_driver_sql(
            "INSERT INTO domains (id, name, mail_dir, type, delivery_host, backup_priority, "
            "home_node, default_box_mb, max_users, session_send_mb, session_send_messages, "
            "max_message_size, catch_all, monitor, blank_password, over_limit_notice, "
            "over_limit_threshold, created, updated) VALUES (1, 'example.com', '/srv/ex', "
            "'normal', '', 0, '', 0, 0, 0, 0, 0, '', '', 'system', 'none', 0, 1, 1)"
        )
        for name, check in (("on", True), ("off", False)):
            conn.execute(
                sa.text(
                    "INSERT INTO users (domain_id, name, first_name, last_name, account_type, "
                    "smtp_auth_disabled, disk_limit_mb, daily_send_messages, daily_send_mb, "
                    "daily_limits_enabled, max_message_size, virus_check, password_hash, "
                    "password_clear, keep_clear, created, updated) VALUES (1, :name, '', '', "
                    "'normal', false, 0, 0, 0, false, 0, :check, NULL, NULL, false, 1, 1)"
                ),
                {"name": name, "check": check},
            )
    engine.dispose()
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as upgraded:
        overrides = upgraded.get_plugin_overrides("antivirus")
    assert overrides == {("user", "off@example.com"): (False, {})}


def test_simultaneous_first_opens_migrate_once(db_url: str) -> None:
    """S5: several processes starting at once (server, CLI) all open the new database."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            with SQLDirectory.open(db_url) as directory:
                assert directory.schema_version() == migrations.head()
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=open_it) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []


def test_sqlite_file_settings(tmp_path: Path) -> None:
    """S5: SQLite runs in WAL mode with foreign keys and a busy timeout; only the owner may
    read the file (it holds password hashes)."""
    path = tmp_path / "mailmax.db"
    with SQLDirectory.open(f"sqlite:///{path}") as directory:
        with directory.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000}
        assert directory.dialect == "sqlite"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_postgresql_url_without_driver_uses_psycopg(pg_url: str) -> None:
    """S5: postgresql://... works as written (psycopg 3 is the driver)."""
    with SQLDirectory.open(pg_url.replace("postgresql+psycopg://", "postgresql://")) as directory:
        assert directory.dialect == "postgresql"
        assert directory.engine.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "not a database URL"),
        ("mysql://u:p@localhost/db", "'mysql' is not supported"),
        ("sqlite:////no/such/folder/mailmax.db", "does not exist; create it"),
    ],
)
def test_unusable_urls_are_explained(url: str, message: str) -> None:
    """M4: a bad database URL says what is wrong and what to use instead."""
    with pytest.raises(DirectoryError, match=message):
        SQLDirectory.open(url)


def test_unreachable_database_is_a_temporary_failure() -> None:
    """S5: a database that is down raises DirectoryUnavailable, without the password."""
    with pytest.raises(DirectoryUnavailable, match="cannot be used") as info:
        SQLDirectory.open("postgresql://mailmax:topsecret@127.0.0.1:1/mailmax")
    assert "topsecret" not in str(info.value)


def test_system_blank_password_policy_cannot_be_system(tmp_path: Path) -> None:
    """A6: the system default must be a real policy."""
    with pytest.raises(DirectoryError, match="fill, none or disable"):
        SQLDirectory.open(
            f"sqlite:///{tmp_path / 'd.db'}", blank_password_default=BlankPasswordPolicy.SYSTEM
        )


def test_a_database_from_a_newer_version_is_refused(db_url: str) -> None:
    """S5: a node with older code does not touch a schema it does not know."""
    with SQLDirectory.open(db_url) as directory, directory.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(DirectoryError, match="newer than this MailMax knows"):
        SQLDirectory.open(db_url)
