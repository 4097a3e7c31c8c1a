"""The plugin API's data, schedules and services in a real server (``twistd mailmax``).

The test plugin ``tally`` (tests/plugins/tally) sits in the server's plugins directory: it
counts messages in its key-value store, reports on a schedule into its own table and by a
notice mail, refuses senders by a DNS TXT record, and has a task that fails on demand.
"""

from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmax.testing import TestServer, start_server
from tests.fixtures.dns import dns_server
from tests.plugins import tally

TALLY = Path(tally.__file__).parent
COUNT = "SELECT value FROM plugin_kv WHERE plugin = 'tally' AND key = 'messages'"


def tally_files() -> dict[str, str]:
    """The tally plugin's files, for the plugins directory."""
    return {
        str(path.relative_to(TALLY.parent)): path.read_text()
        for path in TALLY.rglob("*.py")
        if "__pycache__" not in path.parts
    }


def start(tmp_path: Path, settings: dict[str, Any], **kwargs: Any) -> TestServer:
    return start_server(
        tmp_path / "server",
        plugins=["aliases", "tally"],
        settings={"tally": {"report_seconds": 0.2, **settings}},
        plugin_files=tally_files(),
        **kwargs,
    )


def send(server: TestServer, count: int, sender: str = "sender@remote.test") -> None:
    with server.smtp() as client:
        for number in range(count):
            client.sendmail(sender, ["alice@example.test"], f"Subject: {number}\r\n\r\nhi\r\n")


def notice(server: TestServer, text: str) -> bytes:
    """Wait for a notice to the postmaster whose subject has ``text``."""

    def found() -> bytes | None:
        for message in server.messages("postmaster@example.test"):
            if f"Subject: {text}".encode() in message:
                return message
        return None

    return server.wait_for(found, timeout=15, what=f"a notice {text!r}")


def metrics(server: TestServer) -> dict[str, float]:
    rows = json.loads(server.cli("--json", "metrics", "tally").stdout)
    return {row["name"]: row["value"] for row in rows}


def reports(server: TestServer) -> list[tuple[int, str]]:
    directory = server.directory()
    try:
        with directory.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT messages, label FROM tally_reports ORDER BY id"))
            return [tuple(row) for row in rows]
    finally:
        directory.close()


def test_counts_reports_and_notices_over_real_smtp(tmp_path: Path) -> None:
    """The key-value store counts messages; the scheduled task writes the plugin's own
    table (made by its migrations) and mails a notice through the queue; metrics are read
    with `mailmax metrics`; a failing task is logged and counted and the others go on."""
    server = start(tmp_path, {"notify": "postmaster@example.test", "fail_task": True})
    try:
        send(server, 2)
        server.wait_for_mail("alice@example.test", 2)
        message = notice(server, "tally: 2 messages")
        assert b"From: tally@mail.example.test" in message
        assert b"2 messages so far." in message
        assert reports(server)[-1] == (2, "tally")
        values = server.wait_for(
            lambda: (m := metrics(server)).get("tally.task.broken.failures", 0) >= 2 and m
        )
        assert values["tally.messages"] == 2
        assert values["tally.reported"] == 2
        assert values["tally.task.report.runs"] >= 1
        text = server.cli("metrics").stdout
        assert any(line.split() == ["tally.messages", "counter", "2"] for line in text.splitlines())
        assert "task broken failed" in server.log_text()
        assert "RuntimeError: broken on purpose" in server.log_text()
        directory = server.directory()
        try:
            with directory.engine.connect() as conn:
                version = conn.execute(sa.text("SELECT version_num FROM tally_alembic_version"))
                assert version.scalar() == "0002"
                counted = conn.execute(sa.text(COUNT))
                assert counted.scalar() == "2"
        finally:
            directory.close()
    finally:
        server.stop()


def test_a_reload_restarts_the_schedule_with_the_new_settings(tmp_path: Path) -> None:
    """After `mailmax reload` the tasks run with the new set's settings; the counts in
    the store and the metrics go on; a reload whose plugin migration fails changes nothing."""
    server = start(tmp_path, {"notify": "postmaster@example.test"})
    try:
        send(server, 1)
        notice(server, "tally: 1 messages")
        server.sections["plugins.settings.tally"]["label"] = "counted"
        server.write_config()
        assert server.reload().returncode == 0
        send(server, 1)
        notice(server, "counted: 2 messages")
        assert reports(server)[-2:] == [(1, "tally"), (2, "counted")]
        assert metrics(server)["tally.messages"] == 2

        server.sections["plugins.settings.tally"]["report_seconds"] = 0.01
        server.write_config()
        checked = server.cli("plugin", "check", check=False)
        assert checked.returncode == 1
        assert "task report: the interval must be at least 0.05s, not 0.01" in checked.stderr
        refused = server.reload()
        assert refused.returncode == 1
        assert "task report: the interval must be at least 0.05s" in refused.stderr
        server.sections["plugins.settings.tally"]["report_seconds"] = 0.2

        broken = server.data_dir / "plugins" / "tally" / "migrations" / "versions" / "0003_bad.py"
        broken.write_text(
            '"""A broken step."""\nfrom alembic import op\n\nrevision = "0003"\n'
            'down_revision = "0002"\n\n\ndef upgrade():\n'
            '    op.execute("ALTER TABLE no_such_table ADD COLUMN x INTEGER")\n'
        )
        server.sections["plugins.settings.tally"]["label"] = "never"
        server.write_config()
        result = server.reload()
        assert result.returncode == 1
        assert "plugin 'tally': migrating its tables failed" in result.stderr
        send(server, 1)
        notice(server, "counted: 3 messages")  # the old set still serves, and its schedule runs
    finally:
        server.stop()


def test_the_hosts_dns_resolver_uses_the_configured_servers(tmp_path: Path) -> None:
    """Q6: a plugin's TXT, A and PTR look-ups go to [queue] dns_servers; the answers decide."""
    zones = {
        "policy.test": {
            "policy.test": [("TXT", "zone")],
            "spam.example.policy.test": [("TXT", "deny")],
            "good.example.policy.test": [("TXT", "ok")],
            "listed.example.policy.test": [("A", "127.0.0.2")],
        },
        "127.in-addr.arpa": {
            "127.in-addr.arpa": [("TXT", "zone")],
            "1.0.0.127.in-addr.arpa": [("PTR", "client.trusted.test")],
        },
    }
    with dns_server(zones) as (host, port):
        server = start(
            tmp_path,
            {"policy_zone": "policy.test", "ptr_suffix": ".trusted.test"},
            sections={"queue": {"dns_servers": [f"{host}:{port}"], "dns_timeout": 5.0}},
        )
        try:
            with server.smtp() as client:
                client.ehlo("client.test")
                assert client.mail("x@spam.example") == (
                    550,
                    b"5.7.1 Sender domain spam.example is refused by policy",
                )
                client.rset()
                assert client.mail("x@listed.example") == (
                    550,
                    b"5.7.1 Sender domain listed.example is listed",
                )
                client.rset()
                assert client.mail("x@good.example")[0] == 250
                client.rset()
                assert client.mail("x@unlisted.example")[0] == 250
            server.sections["plugins.settings.tally"]["ptr_suffix"] = ".elsewhere.test"
            server.write_config()
            assert server.reload().returncode == 0
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                server.smtp()
            assert refused.value.smtp_code == 554
            assert b"No PTR name under .elsewhere.test for 127.0.0.1" in refused.value.smtp_error
        finally:
            server.stop()


def test_plugin_tables_and_store_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same plugin on a PostgreSQL directory: its tables are migrated there and
    its counts kept there."""
    server = start(tmp_path, {}, sections={"server": {"database_url": pg_url}})
    try:
        send(server, 3)
        server.wait_for_mail("alice@example.test", 3)
        server.wait_for(lambda: reports(server)[-1:] == [(3, "tally")], what="the report of 3")
        engine = sa.create_engine(pg_url)
        try:
            with engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                value = conn.execute(sa.text(COUNT)).scalar()
        finally:
            engine.dispose()
        assert {"tally_reports", "tally_alembic_version", "plugin_kv"} <= tables
        assert value == "3"
    finally:
        server.stop()


def test_metrics_without_a_running_server_says_so(tmp_path: Path) -> None:
    """`mailmax metrics` with no server exits 1 and says why."""
    server = start(tmp_path, {})
    server.stop()
    result = server.cli("metrics", check=False)
    assert result.returncode == 1
    assert "no running server" in result.stderr
    try:
        smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=2).quit()
        raise AssertionError("the server still listens")
    except OSError:
        pass
