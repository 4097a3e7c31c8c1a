"""The access rules a running server decides with: read from the directory, kept for a few
seconds.

The ``mailmax_client_rights`` hook is synchronous (it runs for every connection, before the
connection limits), so it answers from the copy held here. A scheduled task reads the table
again every ``refresh_seconds``, and so does the ``mailmax_connect`` hook when the copy is older
than that: rules changed with ``mailmax access`` (or by another node) hold within that time,
without a reload. Callers that arrive while a read is under way wait for that one read.
"""

from __future__ import annotations

from typing import Any

from mailmax.plugin import LiveCopy
from mailmax.plugins.access import store
from mailmax.plugins.access.rules import RuleIndex


class LiveRules(LiveCopy[RuleIndex]):
    """The current :class:`RuleIndex` of one host, refreshed on demand."""

    def empty(self) -> RuleIndex:
        """No rules before the first read."""
        return RuleIndex()

    async def load(self, context: Any, now: float) -> RuleIndex:
        """Every stored rule, indexed."""
        return RuleIndex(await context.transaction(store.all_rules))


def live_rules(host: Any) -> LiveRules:
    """The :class:`LiveRules` of ``host`` (one per running server)."""
    return LiveRules.of(host)
