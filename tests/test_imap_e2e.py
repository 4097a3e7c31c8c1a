"""IMAP in the whole server (``twistd mailmax``): mail accepted by SMTP, delivered by the queue,
read and pushed over IMAP; graceful stop (S3, S1, Q1).
"""

from __future__ import annotations

import imaplib
import time
from collections.abc import Callable

import pytest

from tests.fixtures.server import DOMAIN, MailMaxServer


@pytest.fixture
def server(mailmax_factory: Callable[..., MailMaxServer]) -> MailMaxServer:
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
        {"service": "imap", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
        {"service": "imaps", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
    ]
    return mailmax_factory(listeners=listeners, imap={"idle_poll_seconds": 0.2})


def imaps(server: MailMaxServer) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "localhost", server.ports["imaps"], ssl_context=server.ssl_context(), timeout=10
    )
    client.login("alice", "alicesecret")
    return client


def send(server: MailMaxServer, subject: str) -> None:
    with server.smtp() as smtp:
        smtp.sendmail(
            "bob@example.test",
            ["alice@example.test"],
            f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n"
            "Hello Alice.\r\n",
        )


def test_smtp_delivery_idle_push_starttls_and_sigterm(server: MailMaxServer) -> None:
    """S3, Q1: mail accepted by SMTP and delivered by the queue shows up in IDLE; BODY[] is
    the Maildir file; plain IMAP needs STARTTLS before LOGIN; SIGTERM ends sessions with BYE.
    (One server for all steps: starting twistd is the slow part.)"""
    client = imaps(server)
    assert client.select("INBOX") == ("OK", [b"0"])
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    assert client.readline() == b"+ idling\r\n"
    send(server, "pushed by IDLE")
    client.sock.settimeout(15)
    assert client.readline() == b"* 1 EXISTS\r\n"
    assert client.readline() == b"* 1 RECENT\r\n"
    client.send(b"DONE\r\n")
    assert client.readline() == tag + b" OK IDLE terminated\r\n"
    _, data = client.fetch("1", "(BODY.PEEK[])")
    (stored,) = server.messages("alice@example.test")
    assert data[0][1] == stored
    assert b"Subject: pushed by IDLE" in stored and b"Received: from" in stored

    plain = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    assert "LOGINDISABLED" in plain.capabilities
    context = server.ssl_context()
    context.check_hostname = False
    plain.starttls(context)
    assert plain.login("alice", "alicesecret")[0] == "OK"
    plain.logout()

    started = time.monotonic()
    server.stop()
    assert client.readline() == b"* BYE Server shutting down\r\n"
    assert time.monotonic() - started < 10
