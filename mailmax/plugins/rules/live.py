"""The rule lists a running server uses: read from the directory, kept for a few seconds.

Reading the table at every delivery would cost a query each. One :class:`LiveRules` per plugin
host keeps each list (the system's, a domain's, a user's) for ``refresh_seconds``, so a rule
added, changed or switched off with ``mailmax rule`` holds within that time without a reload.
The lists a delivery needs and does not have fresh are read in one query; the lists of one
recipient, put together and made ready to run (:class:`~.engine.RuleList`), are kept as long as
the lists they are made of.
"""

from __future__ import annotations

import weakref
from typing import Any

from mailmax.plugins.rules import store
from mailmax.plugins.rules.engine import RuleList
from mailmax.plugins.rules.model import Rule

#: The most lists kept; past it the copy starts again empty.
MAX_LISTS = 20_000
Key = tuple[str, str]


class LiveRules:
    """Fresh-enough copies of rule lists, by ``(scope, scope_value)``."""

    def __init__(self) -> None:
        self.lists: dict[Key, tuple[float, list[Rule]]] = {}
        #: Per recipient's keys: the lists it was made of and the lists put together.
        self.joined: dict[tuple[Key, ...], tuple[tuple[list[Rule], ...], RuleList]] = {}

    def invalidate(self) -> None:
        """Read every list again at its next use."""
        self.lists.clear()
        self.joined.clear()

    def fresh(self, keys: list[Key], refresh_seconds: float, now: float) -> RuleList | None:
        """The lists ``keys`` put together when each is fresh at ``now``, else None (without
        waiting: :meth:`rules_for` reads what is missing)."""
        lists = []
        for key in keys:
            entry = self.lists.get(key)
            if entry is None or now - entry[0] >= refresh_seconds:
                return None
            lists.append(entry[1])
        return self._joined(keys, lists)

    def _joined(self, keys: list[Key], lists: list[list[Rule]]) -> RuleList:
        joined_key = tuple(keys)
        found = self.joined.get(joined_key)
        parts = tuple(lists)
        if found is not None and all(a is b for a, b in zip(found[0], parts, strict=True)):
            return found[1]
        rules = RuleList.of([rule for part in parts for rule in part])
        if len(self.joined) >= MAX_LISTS:
            self.joined.clear()
        self.joined[joined_key] = (parts, rules)
        return rules

    async def rules_for(self, context: Any, keys: list[Key], refresh_seconds: float) -> RuleList:
        """The enabled rules of the lists ``keys``, in that order, each list in its order."""
        now = context.host.clock.seconds()
        found_fresh = self.fresh(keys, refresh_seconds, now)
        if found_fresh is not None:
            return found_fresh
        stale = [
            key
            for key in keys
            if key not in self.lists or now - self.lists[key][0] >= refresh_seconds
        ]
        found = await context.transaction(store.lists, stale)
        if len(self.lists) + len(found) > MAX_LISTS:
            self.lists.clear()
            self.joined.clear()
        for key, rules in found.items():
            self.lists[key] = (now, rules)
        return self._joined(keys, [self.lists.get(key, (now, []))[1] for key in keys])


_BY_HOST: weakref.WeakKeyDictionary[Any, LiveRules] = weakref.WeakKeyDictionary()


def live_rules(host: Any) -> LiveRules:
    """The :class:`LiveRules` of ``host`` (one per running server)."""
    found = _BY_HOST.get(host)
    if found is None:
        found = _BY_HOST[host] = LiveRules()
    return found
