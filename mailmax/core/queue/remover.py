"""Removing finished messages from the spool in batches, off the reactor thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from mailmax.core.spool.spool import Spool


class BatchRemover:
    """Removes finished messages in batches: one thread job and one directory fsync for all
    the messages that finished while the previous batch was being removed."""

    def __init__(self, in_thread: Callable[..., defer.Deferred[Any]]) -> None:
        self.in_thread = in_thread
        self._waiting: dict[Spool, list[tuple[str, defer.Deferred[None]]]] = {}
        self._running = False
        self._drained: list[defer.Deferred[None]] = []

    def drained(self) -> defer.Deferred[None]:
        """Fire once every removal asked for so far is done."""
        if not self._running:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained.append(d)
        return d

    def remove(self, spool: Spool, queue_id: str) -> defer.Deferred[None]:
        """Fire once the message ``queue_id`` of ``spool`` is removed."""
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.setdefault(spool, []).append((queue_id, d))
        if not self._running:
            self._running = True
            defer.ensureDeferred(self._run())
        return d

    async def _run(self) -> None:
        try:
            while self._waiting:
                spool, items = self._waiting.popitem()
                try:
                    await spool.remove_soon([queue_id for queue_id, _ in items], self.in_thread)
                except Exception as exc:
                    for _, d in items:
                        d.errback(exc)
                else:
                    for _, d in items:
                        d.callback(None)
        finally:
            self._running = False
            waiters, self._drained = self._drained, []
            for d in waiters:
                d.callback(None)
