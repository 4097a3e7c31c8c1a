"""Dot-stuffing, TOP's cut and the streaming producer, chunk by chunk (S2)."""

from __future__ import annotations

import io
import random

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from mailmax.core.pop3.sender import DotStuffer, MessageSender, TopFilter, stuff


def unstuff(data: bytes) -> bytes:
    assert data.endswith(b"\r\n.\r\n")
    lines = data[:-5].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"", b".\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\n..\r\n...x\r\n", b"a\r\n..\r\n...\r\n....x\r\n.\r\n"),
        (b"no final newline", b"no final newline\r\n.\r\n"),
        (b"bare\n.lf\n", b"bare\n..lf\n.\r\n"),
        (b"x\r\n.", b"x\r\n..\r\n.\r\n"),
    ],
)
def test_stuff_whole(message: bytes, wire: bytes) -> None:
    """S2: every line starting with "." gets one more; the response always ends in CRLF.CRLF."""
    assert stuff(message) == wire


def test_stuffing_does_not_depend_on_chunking() -> None:
    """S2: a "." at any chunk boundary is stuffed exactly as in one piece."""
    rng = random.Random(7)
    message = b"".join(rng.choice([b".", b"..", b"x", b"\r\n", b"\n", b"\r"]) for _ in range(5000))
    whole = stuff(message)
    for _ in range(50):
        stuffer = DotStuffer()
        cuts = sorted(rng.sample(range(1, len(message)), 40))
        pieces = [message[a:b] for a, b in zip([0, *cuts], [*cuts, len(message)], strict=True)]
        assert b"".join(stuffer.feed(p) for p in pieces) + stuffer.finish() == whole


def test_top_filter_across_chunks() -> None:
    """S2: TOP n m sends the header, the blank line and m body lines, wherever chunks split."""
    message = b"A: 1\r\nB: 2\r\n\r\nline1\r\nline2\r\nline3\r\n"
    for size in (1, 2, 3, 5, 100):
        for lines, expected_end in ((0, b"\r\n\r\n"), (2, b"line2\r\n"), (9, b"line3\r\n")):
            top = TopFilter(lines)
            out = b""
            for i in range(0, len(message), size):
                out += top.feed(message[i : i + size])
                if top.done:
                    break
            assert out.endswith(expected_end), (size, lines, out)
            assert out == message[: message.index(expected_end) + len(expected_end)]


class _Reads:
    """Runs the producer's reads through Deferreds we fire by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[defer.Deferred[bytes], bytes]] = []

    def __call__(self, read, size: int) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        self.pending.append((d, read(size)))
        return d

    def fire_all(self) -> None:
        while self.pending:
            d, data = self.pending.pop(0)
            d.callback(data)


def test_sender_streams_with_flow_control() -> None:
    """S2: a big message is read in chunks, pauses when the transport is full, ends with "."."""
    message = (b"x" * 1000 + b"\r\n.dot\r\n") * 2000
    transport = StringTransport()
    reads = _Reads()
    sender = MessageSender(transport, io.BytesIO(message), reads, prefix=b"+OK\r\n")
    done = sender.start()
    assert transport.producer is sender
    sender.pauseProducing()
    reads.fire_all()
    assert not reads.pending  # paused: no further read is started
    sender.resumeProducing()
    results: list[bool] = []
    done.addCallback(results.append)
    while not results:
        reads.fire_all()
    assert results == [True]
    assert transport.producer is None
    sent = transport.value()
    assert sent.startswith(b"+OK\r\n")
    assert unstuff(sent[5:]) == message.removesuffix(b"\r\n")


def test_sender_stops_when_the_connection_goes() -> None:
    """S2: a lost connection stops the stream and closes the file."""
    handle = io.BytesIO(b"y" * 10_000_000)
    transport = StringTransport()
    reads = _Reads()
    sender = MessageSender(transport, handle, reads)
    done = sender.start()
    d, data = reads.pending.pop(0)
    d.callback(data)  # one chunk sent, the next read is under way
    assert transport.producer is sender and reads.pending
    sender.stopProducing()  # what the transport does when the connection is lost
    results: list[bool] = []
    done.addCallback(results.append)
    reads.fire_all()
    assert results == [False]
    assert handle.closed


def test_sender_reports_a_read_error() -> None:
    """S2: a disk error half-way fails the stream (the server then drops the connection)."""
    transport = StringTransport()

    def failing_read(read, size: int) -> defer.Deferred[bytes]:
        return defer.fail(OSError(5, "Input/output error"))

    handle = io.BytesIO(b"z" * 1000)
    failures: list = []
    MessageSender(transport, handle, failing_read).start().addErrback(failures.append)
    assert failures and failures[0].check(OSError)
    assert handle.closed and transport.producer is None
