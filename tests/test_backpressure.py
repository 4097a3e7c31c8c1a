"""Backpressure: a client that pipelines commands and never reads the replies (issue: memory
grew by more than 1 GB) is paused, holds a bounded buffer, and is dropped after the send timeout
while other clients go on being served. Real sockets; the sessions' clock is a fake one."""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net_support import PROTOCOLS, REPLY_ENDS, build_listener, read_line, read_until
from tests.test_spool_reactor import ReactorThread, running_reactor

#: The most a stuck session may hold: unsent replies plus unread input.
BOUND = 512 * 1024


@pytest.fixture
def rt() -> Iterator[ReactorThread]:
    """A private running reactor."""
    yield from running_reactor()


def _tcp(transport: Any) -> Any:
    """The TCP transport under a TLS one."""
    return getattr(transport, "transport", None) or transport


def _fixed_send_buffer(session: Any) -> None:
    """Give the server's socket a small fixed send buffer: without it the kernel keeps growing
    the buffer for a while (and the session resumes each time), which makes the moment the
    session stays blocked depend on the kernel, not on the test's clock."""
    _tcp(session.transport).socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)


def _held(session: Any) -> tuple[int, int]:
    """(bytes of replies waiting in the transport, bytes of input not handled yet)."""
    tcp = _tcp(session.transport)
    unsent = len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
    unsent += sum(len(b) for b in getattr(session.transport, "_appSendBuffer", []))
    return unsent, session.pending_input()


def _flood(client: socket.socket, command: bytes, blocked: Any, timeout: float = 30.0) -> int:
    """Send ``command`` over and over, never reading, until ``blocked()``; the bytes sent."""
    client.setblocking(False)
    payload = command * 4096
    sent = 0
    deadline = time.monotonic() + timeout
    while not blocked():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never stopped taking commands ({sent} bytes sent)")
        try:
            sent += client.send(payload)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            select.select([], [client], [], 0.05)
    return sent


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("service", sorted(PROTOCOLS))
def test_a_client_that_never_reads_is_paused_bounded_and_dropped(
    rt: ReactorThread, service: str, tls: bool
) -> None:
    """R: pipelined EHLO / CAPA / CAPABILITY with no reading: the session stops taking commands
    once its send buffer is full, holds less than 512 KiB, and is dropped after send_timeout;
    another client is served all along. The same over TLS."""
    listener = build_listener(rt, service, tls=tls, send_timeout=30)
    command = PROTOCOLS[service]["command"]
    flooder = listener.connect(rcvbuf=4096, tls=tls)
    assert read_line(flooder)  # the greeting
    listener.wait_for(lambda: len(listener.factory.sessions) == 1)
    (stuck,) = listener.sessions()
    rt.call(_fixed_send_buffer, stuck)

    sent = _flood(flooder, command, lambda: rt.call(lambda: stuck.send_blocked))
    for _ in range(20):  # keep pushing: nothing more is taken or answered
        try:
            sent += flooder.send(command * 4096)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            select.select([], [flooder], [], 0.02)
    unsent, unread = rt.call(_held, stuck)
    assert rt.call(lambda: stuck.send_blocked)
    assert unsent + unread < BOUND, (unsent, unread, sent)

    other = listener.connect(tls=tls)
    assert read_line(other)
    other.sendall(command)
    assert REPLY_ENDS[service] in read_until(other, REPLY_ENDS[service])

    listener.advance(29)
    assert stuck in listener.sessions()
    listener.advance(2)
    listener.wait_for(lambda: stuck not in listener.factory.sessions)
    remaining = listener.sessions()
    assert len(remaining) == 1 and remaining[0] is not stuck

    other.sendall(command)
    assert REPLY_ENDS[service] in read_until(other, REPLY_ENDS[service])
    flooder.close()
    other.close()
    rt.call(listener.port.stopListening)


@pytest.mark.parametrize("service", sorted(PROTOCOLS))
def test_a_slow_reader_gets_every_reply(rt: ReactorThread, service: str) -> None:
    """R: a client whose replies piled up (the session blocked for a while, less than the send
    timeout) and who then reads gets a reply to every command, in order, and stays connected."""
    listener = build_listener(rt, service, send_timeout=30)
    command = PROTOCOLS[service]["command"]
    client = listener.connect(rcvbuf=4096)
    assert read_line(client)
    listener.wait_for(lambda: len(listener.factory.sessions) == 1)
    (session,) = listener.sessions()
    rt.call(_fixed_send_buffer, session)
    sent = _flood(client, command, lambda: rt.call(lambda: session.send_blocked))
    client.settimeout(10)
    partial = sent % len(command)
    if partial:
        client.sendall(command[partial:])
    commands = -(-sent // len(command))
    listener.advance(20)  # blocked for a while, not long enough to be dropped
    end = REPLY_ENDS[service]
    replies, tail = 0, b""
    while replies < commands:
        data = client.recv(1 << 20)
        assert data, f"closed after {replies} of {commands} replies"
        chunk = tail + data
        replies += chunk.count(end)
        tail = chunk[-len(end) + 1 :]
    assert replies == commands
    assert session in listener.sessions()
    client.close()
    rt.call(listener.port.stopListening)
