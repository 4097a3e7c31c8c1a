"""POP3 limits over real sockets: failed-login delays and blocks, idle timeout, shutdown (S2)."""

from __future__ import annotations

import poplib
import signal
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from mailmax.core.store.mailbox import MailStore
from tests.pop3_support import PASSWORDS, POP3Process

DELAY = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[POP3Process]:
    process = POP3Process(
        tmp_path_factory.mktemp("limits"),
        failure_delay=DELAY,
        max_failure_delay=DELAY,
        block_after=4,
        ip_block_after=4,
        block_seconds=60.0,
        client_timeout=1.0,
    )
    process.prepare()
    process.start()
    try:
        yield process
    finally:
        process.stop()


def connect(server: POP3Process) -> poplib.POP3_SSL:
    context = ssl.create_default_context(cafile=str(server.cert))
    return poplib.POP3_SSL("localhost", server.ports["pop3s"], context=context, timeout=10)


def attempt(server: POP3Process, name: str, password: str) -> tuple[bytes, float]:
    """USER/PASS from 127.0.0.2, so blocking that address spares the other tests."""
    context = ssl.create_default_context(cafile=str(server.cert))
    raw = socket.create_connection(
        ("127.0.0.1", server.ports["pop3s"]), timeout=10, source_address=("127.0.0.2", 0)
    )
    with context.wrap_socket(raw, server_hostname="localhost") as conn:
        reader = conn.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        conn.sendall(f"USER {name}\r\n".encode())
        assert reader.readline().startswith(b"+OK")
        start = time.monotonic()
        conn.sendall(f"PASS {password}\r\n".encode())
        reply = reader.readline().rstrip(b"\r\n")
        return reply, time.monotonic() - start


def test_failed_logins_are_delayed_alike_then_blocked(server: POP3Process) -> None:
    """A6: unknown user and wrong password: same reply, same delay; then a temporary block."""
    ok, _ = attempt(server, "bob", PASSWORDS["bob"])  # warms the directory's thread pool up
    assert ok.startswith(b"+OK")
    unknown, t_unknown = attempt(server, "nobody", "whatever")
    wrong, t_wrong = attempt(server, "alice", "wrong password")
    assert unknown == wrong == b"-ERR [AUTH] Authentication failed"
    assert t_unknown >= DELAY and t_wrong >= DELAY
    assert abs(t_unknown - t_wrong) < 0.3, (t_unknown, t_wrong)
    attempt(server, "bob", "wrong")
    attempt(server, "bob", "wrong again")  # the 4th failure from this IP: blocked
    reply, elapsed = attempt(server, "alice", PASSWORDS["alice"])
    assert reply.startswith(b"-ERR [SYS/TEMP] too many failed logins; try again in 1 minute")
    assert elapsed >= DELAY
    assert "blocking IP 127.0.0.2 for" in server.output()
    client = connect(server)  # another client address is not affected
    client.user("bob")
    assert client.pass_(PASSWORDS["bob"]).startswith(b"+OK")
    client.quit()


def test_idle_session_is_closed(server: POP3Process) -> None:
    """S2: a client that says nothing for client_timeout seconds is disconnected."""
    client = connect(server)
    time.sleep(1.5)
    assert client.file.readline() == b"-ERR [SYS/TEMP] Idle too long, closing connection\r\n"
    assert client.file.readline() == b""
    client.close()


def test_shutdown_closes_sessions_without_expunging(server: POP3Process) -> None:
    """S2: on SIGTERM open sessions are told and closed; messages marked DELE stay."""
    server.deliver("bob", b"Subject: keep me\r\n\r\nx\r\n")
    client = connect(server)
    client.user("bob")
    client.pass_(PASSWORDS["bob"])
    client.dele(1)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert client.file.readline().startswith(b"-ERR [SYS/TEMP] Server shutting down")
    client.close()
    assert server.proc.wait(10) == 0
    with MailStore(server.maildir("bob"), fsync=False).open() as inbox:
        assert len(inbox) == 1
