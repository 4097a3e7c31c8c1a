"""Finding alias loops at delivery: an address whose targets only ever lead back to themselves.

``mailmax alias add`` refuses a loop, but one can still come from a database changed by other
tools or from a resolver plugin. Delivery then follows the targets the way it would deliver
them; when no way leads anywhere (a mailbox, another server, or an address that bounces), the
recipient fails with 5.4.6 and the sender gets a bounce instead of losing the mail silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailmax.core.directory.api import Lookup
from mailmax.core.hooks import PluginSet, Scope

#: Addresses followed at most; beyond that the expansion is let through (no loop assumed).
MAX_FOLLOWED = 1000
_EXPANDED = frozenset({Lookup.ALIAS, Lookup.UNKNOWN_USER})


def leads_somewhere(
    directory: Any, plugins: PluginSet, address: str, targets: Sequence[str]
) -> bool:
    """True when one of ``targets`` (what ``address`` expands to) ends somewhere (blocking).

    An end is a mailbox, a disabled or unknown address (it bounces), or a remote address. An
    alias or an address a resolver plugin expands is followed through its own targets.
    """
    seen = {address.lower()}
    todo = list(targets)
    while todo:
        target = todo.pop()
        if target.lower() in seen:
            continue
        if len(seen) > MAX_FOLLOWED:
            return True
        seen.add(target.lower())
        found = directory.lookup_recipient(target)
        if found.status not in _EXPANDED or found.domain is None:
            return True
        more = plugins.first_result(
            "mailmax_resolve_recipient", Scope(domain=found.domain.name), address=found.address
        )
        if more:
            todo += [str(t) for t in more]
        elif found.status is Lookup.ALIAS:
            todo += list(found.targets)
        else:
            return True
    return False
