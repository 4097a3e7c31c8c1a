"""The bans a running server checks: read from the directory, kept for a few seconds.

Every SMTP command would otherwise cost a database query. One :class:`LiveBans` per plugin host
re-reads the table when its copy is older than the plugin's ``refresh_seconds``, so bans added
with ``mailmax ban`` (or by another node) hold within that time; callers that arrive while a
read is under way wait for that one read. Expiry is checked at each look-up on the host's clock,
so a ban stops holding the moment it expires.
"""

from __future__ import annotations

from typing import Any

from mailmax.plugin import LiveCopy
from mailmax.plugins.bans import store
from mailmax.plugins.bans.patterns import BanIndex


class LiveBans(LiveCopy[BanIndex]):
    """The current :class:`BanIndex` of one host, refreshed on demand."""

    def empty(self) -> BanIndex:
        """No bans before the first read."""
        return BanIndex()

    async def load(self, context: Any, now: float) -> BanIndex:
        """The bans in force at ``now``, indexed."""
        return BanIndex.build(await context.transaction(store.live_bans, now))


def live_bans(host: Any) -> LiveBans:
    """The :class:`LiveBans` of ``host`` (one per running server)."""
    return LiveBans.of(host)
