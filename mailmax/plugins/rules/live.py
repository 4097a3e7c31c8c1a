"""The rule lists a running server uses: read from the directory, kept for a few seconds.

Reading the table at every delivery would cost a query each. One :class:`LiveRules` per plugin
host keeps each list (the system's, a domain's, a user's) for ``refresh_seconds``, so a rule
added, changed or switched off with ``mailmax rule`` holds within that time without a reload.
The lists a delivery needs and does not have fresh are read in one query.
"""

from __future__ import annotations

import weakref
from typing import Any

from mailmax.plugins.rules import store
from mailmax.plugins.rules.model import Rule

#: The most lists kept; past it the copy starts again empty.
MAX_LISTS = 20_000
Key = tuple[str, str]


class LiveRules:
    """Fresh-enough copies of rule lists, by ``(scope, scope_value)``."""

    def __init__(self) -> None:
        self.lists: dict[Key, tuple[float, list[Rule]]] = {}

    def invalidate(self) -> None:
        """Read every list again at its next use."""
        self.lists.clear()

    async def rules_for(self, context: Any, keys: list[Key], refresh_seconds: float) -> list[Rule]:
        """The enabled rules of the lists ``keys``, in that order, each list in its order."""
        now = context.host.clock.seconds()
        stale = [
            key
            for key in keys
            if key not in self.lists or now - self.lists[key][0] >= refresh_seconds
        ]
        if stale:
            found = await context.transaction(store.lists, stale)
            if len(self.lists) + len(found) > MAX_LISTS:
                self.lists.clear()
            for key, rules in found.items():
                self.lists[key] = (now, rules)
        out: list[Rule] = []
        for key in keys:
            out += self.lists.get(key, (now, []))[1]
        return out


_BY_HOST: weakref.WeakKeyDictionary[Any, LiveRules] = weakref.WeakKeyDictionary()


def live_rules(host: Any) -> LiveRules:
    """The :class:`LiveRules` of ``host`` (one per running server)."""
    found = _BY_HOST.get(host)
    if found is None:
        found = _BY_HOST[host] = LiveRules()
    return found
