"""The CLI on a PostgreSQL directory: init into a shared database, then manage it (S8, M1)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mailmax.core.cli.main import cli
from tests.test_cli_support import System

pytestmark = pytest.mark.postgres


def init(data_dir, pg_url, *extra):
    return CliRunner().invoke(
        cli,
        ["--json", "init", "--data-dir", str(data_dir), "--domain", "pg.test",
         "--database-url", pg_url, "--non-interactive", *extra],
    )  # fmt: skip


def test_init_on_postgresql_and_manage_it(tmp_path, pg_url):
    """S8: init writes the URL into the config, never prints its password, and refuses to add
    a second system to a database that already has domains unless told to."""
    first = init(tmp_path / "one", pg_url)
    assert first.exit_code == 0, first.output
    assert "mailmaxpw" not in first.output
    report = json.loads(first.stdout)["object"]
    assert report["database_url"].startswith("postgresql+psycopg://mailmax:***@")
    assert not (tmp_path / "one" / "mailmax.db").exists()
    system = System(tmp_path / "one", {})
    assert system.ok("config", "check").startswith("OK: ")
    assert "mailmaxpw" not in system.ok("config", "show")

    system.ok("user", "add", "ann@pg.test", "--password", "a long secret")
    system.ok("alias", "add", "sales@pg.test", "ann@pg.test")
    assert [u["address"] for u in system.json("user", "list", "--filter", "ann")] == ["ann@pg.test"]

    again = init(tmp_path / "two", pg_url)
    assert again.exit_code == 1
    assert "already holds pg.test" in again.stderr and "--force" in again.stderr
    assert "mailmaxpw" not in again.output
    forced = init(tmp_path / "two", pg_url, "--force")
    assert forced.exit_code == 0, forced.output
    report = json.loads(forced.stdout)["object"]
    assert report["mail_dir"] == str(tmp_path / "one" / "mail" / "pg.test")  # the domain's own
    assert not (tmp_path / "two" / "mail" / "pg.test").exists()
    passwords = {u["address"]: u["password"] for u in report["users"]}
    directory = system.directory()
    try:
        assert directory.authenticate("root@pg.test", passwords["root@pg.test"]) is not None
        assert directory.get_user("ann@pg.test") is not None  # the rest of the data is kept
    finally:
        directory.close()
