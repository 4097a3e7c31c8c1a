"""The antivirus plugin on mail that only passes through (Q13, V4): the transit hook scans
mail for a backup domain with a real clamd, and leaves mail scanned at arrival alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mailmax.plugins.antivirus as antivirus
import mailmax.plugins.routing as routing
from mailmax.core.directory.api import DomainType
from mailmax.core.hooks import LoadedPlugin, PluginSet
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.pluginhost.host import PluginHost
from mailmax.core.spool.envelope import SpoolEnvelope
from tests.fixtures.clamd import TEST_VIRUS, TEST_VIRUS_NAME, Clamd
from tests.fixtures.smtp_sink import smtp_sink
from tests.test_outbound_support import Outbound
from tests.test_queue_support import QueueHarness, parse_dsn


def with_antivirus(queue: QueueHarness, tmp_path: Path, **settings: Any) -> None:
    """Routing and antivirus on, the latter with ``settings``, on a host of the harness."""
    host = PluginHost(hostname="mx.example.com", data_dir=tmp_path, reactor=queue.rt.reactor)
    checked = schemas.validate("antivirus", antivirus.Settings, settings)
    queue.plugin_set = PluginSet(
        [
            LoadedPlugin("routing", routing, routing.Settings(), schema=routing.Settings),
            LoadedPlugin("antivirus", antivirus, checked, schema=antivirus.Settings),
        ],
        host=host,
    )


def test_virus_for_a_backup_domain_is_bounced_unsent(
    outbound: Outbound, tmp_path: Path, clamd_server: Clamd
) -> None:
    """Q13: mail queued for a backup domain is scanned before it is passed on; the infected
    message is bounced and never reaches the primary, the clean one does."""
    with smtp_sink(tmp_path / "primary", port=outbound.port, address="127.0.0.2") as primary:
        queue = outbound.queue()
        queue.directory.add_domain("backup.test", type=DomainType.BACKUP, backup_priority=20)
        with_antivirus(queue, tmp_path, clamd_socket=str(clamd_server.socket_path))
        queue.submit(["user@backup.test"], body=b"attached: " + TEST_VIRUS + b"\r\n")
        (dsn,) = queue.wait_mail("alice@example.com")
        (one,) = parse_dsn(dsn)[1]
        assert one["Status"] == "5.7.1" and TEST_VIRUS_NAME in one["Diagnostic-Code"]
        queue.submit(["user@backup.test"], body=b"nothing to see\r\n")
        assert primary.wait_for(1)[0]["rcpts"] == ["user@backup.test"]
        queue.wait_queue_empty()
        assert len(primary.transactions()) == 1


def queue_with_note(queue: QueueHarness, body: bytes, notes: dict[str, str]) -> str:
    """Queue a message for the backup domain as the SMTP server does, with ``notes``."""
    envelope = SpoolEnvelope(
        id=queue.spool.new_id(),
        sender="alice@example.com",
        recipients=[queue.recipient("user@backup.test")],
        received_at=time.time(),
        notes=notes,
    )
    return queue.rt.call(queue.spool.accept, envelope, [b"Subject: t\r\n\r\n" + body])


def test_mail_scanned_at_arrival_is_not_scanned_again(outbound: Outbound, tmp_path: Path) -> None:
    """V4: the scan result kept in the spool envelope spares the transit scan: with no scanner
    reachable, a message noted clean passes, one without a note waits with 451 4.3.0."""
    with smtp_sink(tmp_path / "primary", port=outbound.port, address="127.0.0.2") as primary:
        queue = outbound.queue()
        queue.directory.add_domain("backup.test", type=DomainType.BACKUP, backup_priority=20)
        with_antivirus(queue, tmp_path, clamd_socket=str(tmp_path / "no-clamd.sock"))
        unscanned = queue_with_note(queue, b"two\r\n", {})
        queue_with_note(queue, b"one\r\n", {"antivirus": "clean"})
        (tx,) = primary.wait_for(1)
        assert b"one" in primary.message(tx)
        waiting = queue.wait_for(
            lambda: [r for r in queue.spool.load(unscanned).recipients if r.attempts], "a retry"
        )
        assert "4.3.0" in waiting[0].last_error and "scanner" in waiting[0].last_error
        assert len(primary.transactions()) == 1
