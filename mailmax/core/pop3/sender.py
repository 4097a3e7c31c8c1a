"""Sending a message over POP3: dot-stuffing, TOP's line cut, and a streaming producer.

A message is sent byte for byte as stored, with a ``.`` doubled at the start of every line and
a terminating ``.`` line; both work on chunks, so a message of any size streams in bounded
memory and a ``.`` at a chunk boundary is still stuffed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import defer, interfaces
from zope.interface import implementer

#: Messages up to this size are read and sent in one go on the reactor thread.
SMALL_MESSAGE = 128 * 1024
#: Chunk size for streaming larger messages (each chunk is read in a worker thread).
CHUNK = 256 * 1024
TERMINATOR = b".\r\n"


class DotStuffer:
    """Doubles a leading ``.`` on every line of a chunked byte stream (RFC 1939 3)."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._last = b"\n"

    def feed(self, data: bytes) -> bytes:
        """The stuffed form of the next chunk."""
        if not data:
            return b""
        out = data.replace(b"\n.", b"\n..")
        if self._at_line_start and data[:1] == b".":
            out = b"." + out
        self._at_line_start = data[-1:] == b"\n"
        self._last = data[-1:]
        return out

    def finish(self) -> bytes:
        """What ends the response: a line end when the data lacked one, then ``.``."""
        return TERMINATOR if self._last == b"\n" else b"\r\n" + TERMINATOR


def stuff(data: bytes) -> bytes:
    """A whole message, stuffed and terminated."""
    stuffer = DotStuffer()
    return stuffer.feed(data) + stuffer.finish()


class TopFilter:
    """Passes the header, the blank line after it and the first ``body_lines`` body lines."""

    def __init__(self, body_lines: int) -> None:
        self._left = body_lines
        self._in_header = True
        self._line_empty = True
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The part of the next chunk to send; sets :attr:`done` at the cut."""
        if self.done:
            return b""
        if not self._in_header and self._left <= 0:
            self.done = True
            return b""
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                if data[pos:] not in (b"", b"\r"):
                    self._line_empty = False
                return data
            content = data[pos:newline]
            if self._in_header:
                if self._line_empty and content in (b"", b"\r"):
                    self._in_header = False
            else:
                self._left -= 1
            self._line_empty = True
            pos = newline + 1
            if not self._in_header and self._left <= 0:
                self.done = True
                return data[:pos]


@implementer(interfaces.IPushProducer)
class MessageSender:
    """Streams one open message file to a transport, honouring its flow control.

    ``read`` runs a blocking call off the reactor thread and returns a Deferred. The returned
    Deferred of :meth:`start` fires with True when the terminating ``.`` line was written, or
    False when the connection went away first. The file is closed either way.
    """

    def __init__(
        self,
        transport: Any,
        handle: BinaryIO,
        read: Callable[..., defer.Deferred[bytes]],
        top: TopFilter | None = None,
        prefix: bytes = b"",
    ) -> None:
        self._transport = transport
        self._handle = handle
        self._read = read
        self._top = top
        self._prefix = prefix
        self._stuffer = DotStuffer()
        self._paused = False
        self._reading = False
        self._finished = False
        self._done: defer.Deferred[bool] = defer.Deferred()

    def start(self) -> defer.Deferred[bool]:
        """Register with the transport and begin sending."""
        self._transport.registerProducer(self, True)
        if self._prefix:
            self._transport.write(self._prefix)
        self._pump()
        return self._done

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport wants more."""
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The connection is gone."""
        self._end(False)

    def _pump(self) -> None:
        if self._paused or self._reading or self._finished:
            return
        self._reading = True
        d = self._read(self._handle.read, CHUNK)
        d.addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = False
        if self._finished:
            self._close()
            return
        if self._top is not None:
            data = self._top.feed(data) if data else b""
        if data:
            self._transport.write(self._stuffer.feed(data))
        if not data or (self._top is not None and self._top.done):
            self._transport.write(self._stuffer.finish())
            self._end(True)
            return
        self._pump()

    def _failed(self, failure: Any) -> None:
        self._reading = False
        if self._finished:
            self._close()
        else:
            self._finished = True
            self._close()
            self._transport.unregisterProducer()
            self._done.errback(failure)

    def _close(self) -> None:
        if self._reading:  # a worker thread is reading: close when it returns
            return
        with contextlib.suppress(OSError):
            self._handle.close()

    def _end(self, complete: bool) -> None:
        if self._finished:
            return
        self._finished = True
        self._close()
        self._transport.unregisterProducer()
        self._done.callback(complete)
