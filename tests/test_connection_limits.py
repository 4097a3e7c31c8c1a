"""Per-IP connection limits, exempt networks and the listen backlog.

Limits are counted per (service, IP): concurrent sessions and new connections per minute; a
refused client gets the protocol's refusal (SMTP 421, POP3 -ERR, IMAP * BYE) and is closed.
Real sockets throughout; the limiter's clock is a fake one in the in-process tests.
"""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import task

from mailmax.core.net.limits import ConnectionLimiter
from tests.net_support import PROTOCOLS, build_listener, read_line
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def rt() -> Iterator[ReactorThread]:
    """A private running reactor."""
    yield from running_reactor()


# ---------------------------------------------------------------------- the limiter
def test_limiter_counts_sessions_per_service_and_ip() -> None:
    clock = task.Clock()
    limiter = ConnectionLimiter(clock, max_sessions=2, max_per_minute=0)
    assert limiter.admit("smtp", "192.0.2.1") is None
    assert limiter.admit("smtp", "192.0.2.1") is None
    assert limiter.admit("smtp", "192.0.2.1") == "Too many connections from 192.0.2.1"
    assert limiter.admit("imap", "192.0.2.1") is None  # another service counts apart
    assert limiter.admit("smtp", "192.0.2.2") is None  # another IP too
    limiter.release("smtp", "192.0.2.1")
    assert limiter.admit("smtp", "192.0.2.1") is None
    assert limiter.open_sessions("smtp", "192.0.2.1") == 2


def test_limiter_counts_new_connections_over_a_minute() -> None:
    clock = task.Clock()
    limiter = ConnectionLimiter(clock, max_sessions=0, max_per_minute=3)
    for _ in range(3):
        assert limiter.admit("pop3", "2001:db8::1") is None
        clock.advance(10)
    refusal = limiter.admit("pop3", "2001:db8::1")
    assert refusal == "Too many new connections from 2001:db8::1, try again later"
    clock.advance(30)  # the first is now a minute old
    assert limiter.admit("pop3", "2001:db8::1") is None
    assert limiter.admit("pop3", "2001:db8::1") is not None


def test_limiter_never_limits_exempt_clients() -> None:
    clock = task.Clock()
    limiter = ConnectionLimiter(clock, max_sessions=1, max_per_minute=1)
    for ip in ("127.0.0.1", "198.51.100.7"):
        for _ in range(5):
            assert limiter.admit("smtp", ip, exempt=True) is None
    assert limiter.open_sessions("smtp", "127.0.0.1") == 5
    assert limiter.admit("smtp", "192.0.2.1") is None
    assert limiter.admit("smtp", "192.0.2.1") is not None


def test_limiter_forgets_quiet_addresses() -> None:
    """The per-IP rate records of many addresses do not pile up."""
    clock = task.Clock()
    limiter = ConnectionLimiter(clock, max_sessions=0, max_per_minute=5)
    for n in range(20000):
        limiter.admit("smtp", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        limiter.release("smtp", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        if n % 1000 == 999:
            clock.advance(61)
    assert len(limiter._recent) <= 8192


# ---------------------------------------------------------------------- on each protocol
def _refused(client: socket.socket, service: str, text: bytes) -> None:
    line = read_line(client)
    assert line.startswith(PROTOCOLS[service]["refusal"]) and text in line, line
    assert read_line(client) == b""  # and closed


@pytest.mark.parametrize("service", sorted(PROTOCOLS))
def test_concurrent_sessions_per_ip_are_limited(rt: ReactorThread, service: str) -> None:
    """R: beyond max_sessions_per_ip the client gets 421 / -ERR / * BYE and is closed; when a
    session ends, the IP may connect again; other IPs are not affected."""
    listener = build_listener(rt, service, max_sessions_per_ip=2, exempt_networks=[])
    first, second = listener.connect(), listener.connect()
    assert read_line(first) and read_line(second)
    _refused(listener.connect(), service, b"Too many connections from 127.0.0.1")
    elsewhere = listener.connect(source="127.0.0.9")
    assert not read_line(elsewhere).startswith(PROTOCOLS[service]["refusal"])
    first.close()
    listener.wait_for(lambda: len(listener.factory.sessions) == 2)
    again = listener.connect()
    assert not read_line(again).startswith(PROTOCOLS[service]["refusal"])
    for client in (second, elsewhere, again):
        client.close()
    rt.call(listener.port.stopListening)


@pytest.mark.parametrize("service", sorted(PROTOCOLS))
def test_new_connections_per_ip_per_minute_are_limited(rt: ReactorThread, service: str) -> None:
    """R: beyond max_new_per_ip_per_minute the client is refused until a minute has passed."""
    listener = build_listener(rt, service, max_new_per_ip_per_minute=3, exempt_networks=[])
    for _ in range(3):
        client = listener.connect()
        assert not read_line(client).startswith(PROTOCOLS[service]["refusal"])
        client.close()
    _refused(listener.connect(), service, b"Too many new connections from 127.0.0.1")
    listener.advance(61)
    client = listener.connect()
    assert not read_line(client).startswith(PROTOCOLS[service]["refusal"])
    client.close()
    rt.call(listener.port.stopListening)


@pytest.mark.parametrize("service", sorted(PROTOCOLS))
def test_exempt_networks_are_not_limited(rt: ReactorThread, service: str) -> None:
    """R: a client in exempt_networks is never limited; one outside is."""
    listener = build_listener(rt, service, max_sessions_per_ip=1, exempt_networks=["127.0.0.2"])
    exempt = [listener.connect(source="127.0.0.2") for _ in range(4)]
    for client in exempt:
        assert not read_line(client).startswith(PROTOCOLS[service]["refusal"])
    limited = listener.connect(source="127.0.0.3")
    assert read_line(limited)
    _refused(listener.connect(source="127.0.0.3"), service, b"Too many connections")
    for client in [*exempt, limited]:
        client.close()
    rt.call(listener.port.stopListening)


def test_loopback_is_exempt_by_default(rt: ReactorThread) -> None:
    """R: with the default exempt networks local tools and benchmarks are not throttled."""
    listener = build_listener(rt, "smtp", max_sessions_per_ip=1, max_new_per_ip_per_minute=1)
    clients = [listener.connect() for _ in range(5)]
    for client in clients:
        assert read_line(client).startswith(b"220 ")
        client.close()
    rt.call(listener.port.stopListening)


# ---------------------------------------------------------------------- the real server
def test_the_server_applies_the_configured_limits(mailmax_factory) -> None:
    """R: [connections] in the config file limits every service of the running server."""
    server = mailmax_factory(connections={"max_sessions_per_ip": 2, "exempt_networks": []})
    expected = {"smtp": b"421 4.7.0 ", "pop3": b"-ERR [SYS/TEMP] ", "imap": b"* BYE "}
    for service, refusal in expected.items():
        kept = [server.raw(service), server.raw(service)]
        for client in kept:
            assert not read_line(client).startswith(refusal)
        client = server.raw(service)
        assert read_line(client) == refusal + b"Too many connections from 127.0.0.1\r\n"
        assert read_line(client) == b""
        for client in kept:
            client.close()


def _listen_backlog(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q ...: a listener's Send-Q is its backlog


def test_two_hundred_clients_connecting_at_once_are_all_greeted(mailmax_factory) -> None:
    """R: 200 clients from 100 addresses connect in the same instant: each is greeted. The
    listen backlog is large enough for such a burst (Twisted's default of 50 is not)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    server = mailmax_factory(connections={"exempt_networks": []})
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert _listen_backlog(server.smtp_port) == min(1024, somaxconn)
    clients = []
    for n in range(200):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.bind((f"127.0.0.{n % 100 + 2}", 0))
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", server.smtp_port))
        clients.append(client)
    greeted: dict[socket.socket, bytes] = {}
    waiting = {client: b"" for client in clients}
    deadline = time.monotonic() + 8
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], 0.5)
        for client in readable:
            try:
                data = client.recv(4096)
            except (BlockingIOError, ConnectionError):
                continue
            waiting[client] += data
            if waiting[client].endswith(b"\r\n") or not data:
                greeted[client] = waiting.pop(client)
    assert not waiting, f"{len(waiting)} of 200 clients not greeted within 8 s"
    assert all(line.startswith(b"220 ") for line in greeted.values())
    for client in clients:
        client.close()
