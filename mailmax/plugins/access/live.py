"""The access rules a running server decides with: read from the directory, kept for a few
seconds.

The ``mailmax_client_rights`` hook is synchronous (it runs for every connection, before the
connection limits), so it answers from the copy held here. A scheduled task reads the table
again every ``refresh_seconds``, and so does the ``mailmax_connect`` hook when the copy is older
than that: rules changed with ``mailmax access`` (or by another node) hold within that time,
without a reload. Callers that arrive while a read is under way wait for that one read.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.internet import defer

from mailmax.plugins.access import store
from mailmax.plugins.access.rules import RuleIndex


class LiveRules:
    """The current :class:`RuleIndex` of one host, refreshed on demand."""

    def __init__(self) -> None:
        self.index = RuleIndex()
        self.loaded_at: float | None = None
        self._waiting: list[defer.Deferred[RuleIndex]] | None = None

    def fresh(self, now: float, refresh_seconds: float) -> bool:
        """True when the copy was read less than ``refresh_seconds`` ago."""
        return self.loaded_at is not None and now - self.loaded_at < refresh_seconds

    async def current(self, context: Any, refresh_seconds: float) -> RuleIndex:
        """The index, read again first when it is older than ``refresh_seconds``."""
        if self.fresh(context.host.clock.seconds(), refresh_seconds):
            return self.index
        return await self.read(context)

    async def read(self, context: Any) -> RuleIndex:
        """Read the rules now (or wait for the read under way)."""
        if self._waiting is not None:
            waiter: defer.Deferred[RuleIndex] = defer.Deferred()
            self._waiting.append(waiter)
            return await waiter
        self._waiting = []
        now = context.host.clock.seconds()
        try:
            index = RuleIndex(await context.transaction(store.all_rules))
        except BaseException as exc:
            waiting, self._waiting = self._waiting, None
            for waiter in waiting:
                waiter.errback(exc)
            raise
        self.index, self.loaded_at = index, now
        waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            waiter.callback(index)
        return index


_BY_HOST: weakref.WeakKeyDictionary[Any, LiveRules] = weakref.WeakKeyDictionary()


def live_rules(host: Any) -> LiveRules:
    """The :class:`LiveRules` of ``host`` (one per running server)."""
    found = _BY_HOST.get(host)
    if found is None:
        found = _BY_HOST[host] = LiveRules()
    return found
