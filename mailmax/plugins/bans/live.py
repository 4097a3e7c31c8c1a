"""The bans a running server checks: read from the directory, kept for a few seconds.

Every SMTP command would otherwise cost a database query. One :class:`LiveBans` per plugin host
re-reads the table when its copy is older than the plugin's ``refresh_seconds``, so bans added
with ``mailmax ban`` (or by another node) hold within that time; callers that arrive while a
read is under way wait for that one read. Expiry is checked at each look-up on the host's clock,
so a ban stops holding the moment it expires.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.internet import defer

from mailmax.plugins.bans import store
from mailmax.plugins.bans.patterns import BanIndex


class LiveBans:
    """The current :class:`BanIndex` of one host, refreshed on demand."""

    def __init__(self) -> None:
        self.index = BanIndex()
        self.loaded_at: float | None = None
        self._waiting: list[defer.Deferred[BanIndex]] | None = None

    def invalidate(self) -> None:
        """Make the next look-up read the table again (after this process changed it)."""
        self.loaded_at = None

    async def current(self, context: Any, refresh_seconds: float) -> BanIndex:
        """The index, read again first when it is older than ``refresh_seconds``."""
        now = context.host.clock.seconds()
        if self.loaded_at is not None and now - self.loaded_at < refresh_seconds:
            return self.index
        if self._waiting is not None:
            waiter: defer.Deferred[BanIndex] = defer.Deferred()
            self._waiting.append(waiter)
            return await waiter
        self._waiting = []
        try:
            bans = await context.transaction(store.live_bans, now)
        except BaseException as exc:
            waiting, self._waiting = self._waiting, None
            for waiter in waiting:
                waiter.errback(exc)
            raise
        self.index = BanIndex.build(bans)
        self.loaded_at = now
        waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            waiter.callback(self.index)
        return self.index


_BY_HOST: weakref.WeakKeyDictionary[Any, LiveBans] = weakref.WeakKeyDictionary()


def live_bans(host: Any) -> LiveBans:
    """The :class:`LiveBans` of ``host`` (one per running server)."""
    found = _BY_HOST.get(host)
    if found is None:
        found = _BY_HOST[host] = LiveBans()
    return found
