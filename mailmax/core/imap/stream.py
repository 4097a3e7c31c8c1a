"""Sending a long response (FETCH of many or big messages) without hogging the reactor.

:class:`Streamer` pulls byte chunks from an iterator and writes them in slices of bounded
time and size, yielding to the reactor between slices, and registers itself as the
transport's producer so it stops while the client is not reading.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from twisted.internet import defer, interfaces
from twisted.internet.error import ConnectionLost
from zope.interface import implementer

#: Bytes gathered before one transport write.
WRITE_SIZE = 64 * 1024
#: Most bytes written in one slice.
SLICE_BYTES = 1024 * 1024
#: Most seconds one slice may take.
SLICE_SECONDS = 0.02


@implementer(interfaces.IPushProducer)
class Streamer:
    """Writes ``chunks`` to ``transport``; :meth:`start` fires when all went out."""

    def __init__(self, transport: Any, reactor: Any, chunks: Iterator[bytes]) -> None:
        self.transport = transport
        self.reactor = reactor
        self.chunks = chunks
        self.done: defer.Deferred[None] = defer.Deferred()
        self._paused = False
        self._finished = False
        self._call: Any = None

    def start(self) -> defer.Deferred[None]:
        """Begin; the Deferred fails if the connection goes away first."""
        self.transport.registerProducer(self, True)
        self._schedule()
        return self.done

    def _schedule(self) -> None:
        if self._call is None and not self._finished and not self._paused:
            self._call = self.reactor.callLater(0, self._step)

    def _step(self) -> None:
        self._call = None
        if self._finished or self._paused:
            return
        deadline = time.monotonic() + SLICE_SECONDS
        pending: list[bytes] = []
        size = written = 0
        try:
            while True:
                try:
                    chunk = next(self.chunks)
                except StopIteration:
                    if pending:
                        self.transport.write(b"".join(pending))
                    self._finish(None)
                    return
                pending.append(chunk)
                size += len(chunk)
                if size >= WRITE_SIZE:
                    self.transport.write(b"".join(pending))
                    written += size
                    pending, size = [], 0
                    if self._paused or written >= SLICE_BYTES or time.monotonic() > deadline:
                        break
        except Exception as exc:
            if pending:
                self.transport.write(b"".join(pending))
            self._finish(exc)
            return
        if pending:
            self.transport.write(b"".join(pending))
        self._schedule()

    def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        with contextlib.suppress(Exception):
            self.transport.unregisterProducer()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)

    def pauseProducing(self) -> None:
        """The client is not reading: stop writing."""
        self._paused = True

    def resumeProducing(self) -> None:
        """Go on writing."""
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._finish(ConnectionLost("connection lost while sending"))
