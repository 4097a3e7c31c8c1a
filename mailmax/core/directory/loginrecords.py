"""Successful log-ins written to the directory in batches.

Every log-in of IMAP, POP3 and SMTP AUTH is recorded (``SQLDirectory.record_logins``). One
write per log-in would cost a transaction and a commit each and, under a burst of log-ins,
keep the directory's threads busy with them while other log-ins wait for a thread. Here the
log-ins noted while a write runs, or within :data:`MIN_WRITE_INTERVAL` of the last one, are
written together by the next write: at most one write runs at a time, a few per second under
load, and a lone log-in is written at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="mailmax.directory")

#: Seconds from the end of one write of log-ins to the start of the next, at least.
MIN_WRITE_INTERVAL = 0.5
#: Log-ins waiting to be written at most; beyond that the oldest are dropped (and logged).
MAX_PENDING = 10_000

Record = tuple[str, str, str, float]


class LoginRecorder:
    """Collects log-ins and writes them in batches with ``write(records)``, a call that
    returns a Deferred (the directory's thread pool)."""

    def __init__(
        self,
        write: Callable[[list[Record]], defer.Deferred[Any]],
        reactor: Any,
        *,
        interval: float = MIN_WRITE_INTERVAL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._write = write
        self._reactor = reactor
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[tuple[Record, defer.Deferred[None]]] = []
        self._writing = False
        self._scheduled: Any = None
        self._last_write = float("-inf")

    def record(self, address: str, service: str, ip: str) -> defer.Deferred[None]:
        """Note a log-in now; the Deferred fires once it is written."""
        done: defer.Deferred[None] = defer.Deferred()
        if len(self._pending) >= self._max_pending:
            _, dropped = self._pending.pop(0)
            dropped.callback(None)
            log.warn("too many log-ins waiting to be recorded; the oldest is not recorded")
        self._pending.append(((address, service, ip, time.time()), done))
        self._next()
        return done

    def take(self) -> list[Record]:
        """The log-ins not written yet, forgotten here (for a last write at shutdown)."""
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        batch, self._pending = self._pending, []
        for _, done in batch:
            done.callback(None)
        return [record for record, _ in batch]

    def _next(self) -> None:
        if self._writing or self._scheduled is not None or not self._pending:
            return
        wait = self._last_write + self._interval - self._reactor.seconds()
        if wait > 0:
            self._scheduled = self._reactor.callLater(wait, self._flush)
        else:
            self._flush()

    def _flush(self) -> None:
        self._scheduled = None
        batch, self._pending = self._pending, []
        self._writing = True

        def written(result: Any) -> None:
            self._writing = False
            self._last_write = self._reactor.seconds()
            for _, done in batch:
                if isinstance(result, Failure):
                    done.errback(result)
                else:
                    done.callback(None)
            self._next()

        self._write([record for record, _ in batch]).addBoth(written)
