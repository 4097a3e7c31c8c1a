"""``mailmax queue`` against a real server and with no server running (S4, Q1-Q4)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mailmax.core.cli.main import cli
from tests.fixtures.ports import free_port
from tests.fixtures.server import MailMaxServer
from tests.fixtures.smtp_sink import SMTPSink
from tests.test_outbound_support import outbound_dns

MESSAGE = b"From: alice@example.test\r\nSubject: waiting\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[str, int]]:
    """The test DNS server with the outbound test zones."""
    yield from outbound_dns()


def run(server: MailMaxServer, *args: str) -> Result:
    """``mailmax --config ... queue ARGS`` in process (faster than a subprocess)."""
    return CliRunner().invoke(cli, ["--config", str(server.config_path), "queue", *args])


def ok(server: MailMaxServer, *args: str) -> str:
    result = run(server, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def queue_json(server: MailMaxServer, *args: str) -> Any:
    return json.loads(ok(server, args[0], "--json", *args[1:]))


def wait(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_queue_commands_with_the_server_running(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int], tmp_path: Path
) -> None:
    """Q1-Q4: list shows why mail waits (filters by domain and deferral, JSON); show gives
    each recipient's state; retry sends now; bounce returns mail to the sender with a DSN;
    delete drops it silently; an unknown id is a clear error."""
    port = free_port()
    server = mailmax_factory(
        smtp={"trusted_networks": ["127.0.0.1/32"]},
        queue={
            "dns_servers": [f"{dns[0]}:{dns[1]}"],
            "remote_port": port,
            "retry_minutes": 60.0,
            "connect_timeout": 2.0,
        },
    )
    with server.smtp() as client:
        for rcpt in ("one@example.org", "two@example.org", "three@pref.test"):
            client.sendmail("alice@example.test", [rcpt], MESSAGE)
    listed = wait(
        lambda: len(rows := queue_json(server, "list", "--deferred")) == 3 and rows,
        "three deferred messages",
    )
    assert all(row["reason"].startswith("451 4.4.1 Cannot connect") for row in listed)
    assert all(row["state"] == "deferred (1 attempts)" for row in listed)
    by_rcpt = {row["recipients"][0]["address"]: row["id"] for row in listed}
    assert [r["id"] for r in queue_json(server, "list", "--domain", "pref.test")] == [
        by_rcpt["three@pref.test"]
    ]
    text = ok(server, "list")
    assert "ID" in text.splitlines()[0] and by_rcpt["one@example.org"] in text

    shown = queue_json(server, "show", by_rcpt["one@example.org"])
    assert shown["headers"]["Subject"] == "waiting"
    assert shown["recipients"][0]["attempts"] == 1
    assert (
        "to one@example.org (relay, deferred, 1 attempts"
        in server.cli("queue", "show", by_rcpt["one@example.org"]).stdout
    )

    sink = SMTPSink(tmp_path / "sink", port, {})
    sink.start()
    try:
        done = queue_json(server, "retry", by_rcpt["one@example.org"])
        assert done["ok"] and done["object"]["ids"] == [by_rcpt["one@example.org"]]
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["one@example.org"]
    finally:
        sink.stop()

    done = queue_json(server, "bounce", "--yes", by_rcpt["two@example.org"])
    assert done["message"] == "1 message returned to the sender"
    (dsn,) = server.wait_for_mail("alice@example.test")
    assert b"two@example.org" in dsn and b"Returned to the sender by the mail administrator" in dsn

    ok(server, "delete", "--yes", by_rcpt["three@pref.test"])
    wait(lambda: queue_json(server, "list") == [], "an empty queue")
    assert len(server.messages("alice@example.test")) == 1

    missing = run(server, "retry", "0123456789abcdef00")
    assert missing.exit_code == 1 and "no queued message" in missing.stderr
    both = run(server, "retry", "--all", "0123456789abcdef00")
    assert both.exit_code == 1 and "not several" in both.stderr


def test_queue_commands_without_a_server(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int]
) -> None:
    """Q1: with no server running the commands change the queue files themselves; the next
    start acts on them (a retried message is tried at once, a bounced one bounces)."""
    port = free_port()
    server = mailmax_factory(
        smtp={"trusted_networks": ["127.0.0.1/32"]},
        queue={
            "dns_servers": [f"{dns[0]}:{dns[1]}"],
            "remote_port": port,
            "retry_minutes": 60.0,
            "connect_timeout": 2.0,
        },
    )
    with server.smtp() as client:
        client.sendmail("alice@example.test", ["one@example.org"], MESSAGE)
        client.sendmail("alice@example.test", ["two@example.org"], MESSAGE)
    rows = wait(lambda: len(r := queue_json(server, "list", "--deferred")) == 2 and r, "deferrals")
    server.stop()
    first, second = (row["id"] for row in rows)
    done = queue_json(server, "retry", "--domain", "example.org")
    assert done["object"]["ids"] == [first, second]
    assert "(when the server runs)" in done["message"]
    assert all(row["next_attempt"] == "now" for row in queue_json(server, "list"))
    queue_json(server, "bounce", "--yes", second)
    assert queue_json(server, "show", second)["state"] == "bouncing"
    server.start()
    (dsn,) = server.wait_for_mail("alice@example.test")
    assert b"two@example.org" in dsn
    remaining = wait(lambda: len(r := queue_json(server, "list")) == 1 and r, "one message left")
    assert remaining[0]["id"] == first and remaining[0]["recipients"][0]["attempts"] == 2
