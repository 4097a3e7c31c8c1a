"""Outbound delivery in a real ``twistd mailmax`` (S4, Q1, Q6): SMTP in, MX look-up in the test
DNS server, STARTTLS with a verified certificate, SMTP out to a receiving server; a restart
with mail waiting in the queue."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.server import MailMaxServer
from tests.fixtures.smtp_sink import SMTPSink, smtp_sink
from tests.test_outbound_support import outbound_dns

MESSAGE = b"From: alice@example.test\r\nSubject: out\r\n\r\n.line with a dot\r\nbye\r\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[str, int]]:
    """The test DNS server with the outbound test zones."""
    yield from outbound_dns()


def start_server(
    factory: Callable[..., MailMaxServer], dns: tuple[str, int], sink_port: int, **queue: Any
) -> MailMaxServer:
    """A server that relays for 127.0.0.1 and sends through the test DNS to ``sink_port``."""
    return factory(
        smtp={"trusted_networks": ["127.0.0.1/32"]},
        queue={
            "dns_servers": [f"{dns[0]}:{dns[1]}"],
            "remote_port": sink_port,
            "dns_timeout": 3.0,
            "smtp_timeout": 10.0,
            "retry_minutes": 0.01,
            **queue,
        },
    )


def send(server: MailMaxServer, *recipients: str) -> None:
    with server.smtp() as client:
        client.sendmail("alice@example.test", list(recipients), MESSAGE)


def wait_log(server: MailMaxServer, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log:\n{server.log_text()[-3000:]}")
        time.sleep(0.05)


def test_smtp_in_remote_out_over_verified_starttls(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int], tmp_path: Path
) -> None:
    """S4: mail accepted for a remote domain goes to its MX over STARTTLS (certificate
    verified for the MX name); the receiver gets our Received header and the message."""
    with smtp_sink(tmp_path / "sink", starttls=True, tls_names=["mx.example.org"]) as sink:
        server = start_server(
            mailmax_factory, dns, sink.port, tls="verify", tls_ca_file=str(sink.cert_path)
        )
        send(server, "bob@example.org")
        (tx,) = sink.wait_for(1)
        assert tx["tls"] and tx["rcpts"] == ["bob@example.org"]
        assert tx["helo"] == "mail.example.test"
        received = sink.message(tx)
        assert received.startswith(b"Received: from ")
        assert received.endswith(MESSAGE)
        wait_log(server, "to=bob@example.org relay=mx.example.org[127.0.0.1]")


def test_unverifiable_certificate_defers(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int], tmp_path: Path
) -> None:
    """S4: with tls = verify, a certificate not valid for the MX name stops the session before
    MAIL; the mail waits."""
    with smtp_sink(tmp_path / "sink", starttls=True) as sink:
        server = start_server(
            mailmax_factory, dns, sink.port, tls="verify", tls_ca_file=str(sink.cert_path)
        )
        send(server, "bob@example.org")
        wait_log(server, "TLS negotiation failed")
        assert sink.transactions() == []


def test_restart_with_mail_waiting(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int], tmp_path: Path
) -> None:
    """Q1: mail deferred because the receiver is down survives a restart of the server with
    its attempts recorded, and is delivered once the receiver is up."""
    port = free_port()
    server = start_server(mailmax_factory, dns, port)
    send(server, "bob@example.org", "carol@example.org")
    wait_log(server, "result=deferred")
    server.restart()
    (envelope,) = (server.data_dir / "queue" / "env").iterdir()
    recipients = json.loads(envelope.read_text())["recipients"]
    assert [r["state"] for r in recipients] == ["deferred", "deferred"]
    assert all(r["attempts"] >= 1 and "Cannot connect" in r["last_error"] for r in recipients)
    sink = SMTPSink(tmp_path / "sink", port, {})
    sink.start()
    try:
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["bob@example.org", "carol@example.org"]
        deadline = time.monotonic() + 10
        while list((server.data_dir / "queue" / "env").iterdir()):
            assert time.monotonic() < deadline, "the queue did not empty"
            time.sleep(0.05)
    finally:
        sink.stop()


def test_remote_forward_leaves_through_outbound_delivery(
    mailmax_factory: Callable[..., MailMaxServer], dns: tuple[str, int], tmp_path: Path
) -> None:
    """A7: a user's forward to a remote address goes out through the queue's remote delivery
    (with an SRS sender); the local copy stays."""
    with smtp_sink(tmp_path / "sink") as sink:
        server = start_server(mailmax_factory, dns, sink.port)
        server.cli("plugin", "set", "forwarding", "targets=far@example.org", "--user",
                   "bob@example.test")  # fmt: skip
        time.sleep(1.2)  # the directory cache
        send(server, "bob@example.test")
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["far@example.org"]
        assert tx["mail_from"].startswith("SRS0=")
        assert sink.message(tx).endswith(MESSAGE)
        server.wait_for_mail("bob@example.test")
