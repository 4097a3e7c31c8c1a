"""Replies sent at once (:mod:`mailmax.core.sendnow`), over real loopback connections."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import protocol
from twisted.internet.testing import StringTransport

from mailmax.core.sendnow import write_now
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor."""
    yield from running_reactor()


class _Keep(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.connections.append(self)


def _connected(rt: ReactorThread) -> tuple[socket.socket, protocol.Protocol, object]:
    factory = protocol.ServerFactory()
    factory.protocol = _Keep
    factory.connections = []
    port = rt.call(rt.reactor.listenTCP, 0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    for _ in range(100):
        if factory.connections:
            break
        rt.call(lambda: None)
    return client, factory.connections[0], port


def _receive(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_a_reply_leaves_before_write_now_returns(reactor_thread: ReactorThread) -> None:
    """S1: on a plain TCP connection with nothing queued the bytes are on the socket when
    write_now returns: nothing is left buffered for the reactor's next turn."""
    client, server, port = _connected(reactor_thread)

    def reply() -> tuple[bytes, int]:
        write_now(server.transport, b"250 2.0.0 Ok\r\n")
        transport = server.transport
        return transport.dataBuffer, len(transport._tempDataBuffer)

    try:
        assert reactor_thread.call(reply) == (b"", 0)
        assert _receive(client, 14) == b"250 2.0.0 Ok\r\n"
    finally:
        client.close()
        reactor_thread.call(port.stopListening)


def test_what_the_socket_does_not_take_follows_in_order(reactor_thread: ReactorThread) -> None:
    """S1: a write bigger than the socket buffer is sent in part and the rest buffered; a
    later write is queued behind it, so the peer reads everything in order."""
    client, server, port = _connected(reactor_thread)
    big = bytes(range(256)) * 40_000  # about 10 MB: more than any socket buffer

    def writes() -> int:
        write_now(server.transport, big)
        pending = len(server.transport.dataBuffer) + server.transport._tempDataLen
        write_now(server.transport, b"END\r\n")
        return pending

    try:
        assert reactor_thread.call(writes) > 0
        assert _receive(client, len(big) + 5) == big + b"END\r\n"
    finally:
        client.close()
        reactor_thread.call(port.stopListening)


def test_other_transports_write_as_usual() -> None:
    """A transport that is not a plain socket or pipe (a test transport, TLS) gets a plain
    ``write``; an empty write sends nothing."""
    transport = StringTransport()
    write_now(transport, b"220 ready\r\n")
    write_now(transport, b"")
    assert transport.value() == b"220 ready\r\n"
