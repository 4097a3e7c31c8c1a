"""Recipient resolution by plugins at RCPT time (``mailmax_resolve_recipient``).

The directory says whether an address is a mailbox here (USER), a disabled one, or not ours.
Every other local address (an alias, a catch-all candidate, an unknown name) belongs to the
plugins: the session's plugins are asked in order with ``mailmax_resolve_recipient`` and the
first list of addresses wins; with no answer the address is unknown (550 5.1.1). So switching
the ``aliases`` or ``catchall`` plugin off for a domain switches the feature off there.

Resolvers are synchronous and may block on directory look-ups, so the chain runs in the
directory's thread pool, never on the reactor thread. Each SMTP session resolves with the plugin
set it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.directory.api import Lookup, RecipientLookup
from mailmax.core.hooks import PluginSet, Scope

log = Logger(namespace="mailmax.plugins")

#: Answers of the directory that plugins may turn into deliverable addresses.
RESOLVABLE = frozenset({Lookup.ALIAS, Lookup.CATCH_ALL, Lookup.UNKNOWN_USER})
HOOK = "mailmax_resolve_recipient"


class ResolverError(Exception):
    """A resolver plugin failed; the client gets a temporary failure."""


def resolve_sync(plugins: PluginSet, found: RecipientLookup) -> RecipientLookup:
    """The answer for ``found`` once the plugins have had their say (blocking)."""
    if found.status not in RESOLVABLE or found.domain is None:
        return found
    try:
        targets = plugins.first_result(HOOK, Scope(domain=found.domain.name), address=found.address)
    except Exception as exc:
        log.failure("{hook} failed for {address}", hook=HOOK, address=found.address)
        raise ResolverError(f"recipient resolution failed: {exc}") from exc
    if targets:
        clean = tuple(str(t) for t in targets if isinstance(t, str) and "@" in t)
        if clean:
            return RecipientLookup(Lookup.ALIAS, found.address, found.domain, targets=clean)
    return RecipientLookup(Lookup.UNKNOWN_USER, found.address, found.domain)


class PluginRecipients:
    """A session's directory: the server's AsyncDirectory with plugin resolution added to
    :meth:`lookup_recipient`; every other call goes to the directory unchanged."""

    def __init__(self, directory: Any, plugins: Callable[[], PluginSet | None]) -> None:
        self._directory = directory
        self._plugins = plugins

    def __getattr__(self, name: str) -> Any:
        return getattr(self._directory, name)

    def lookup_recipient(self, address: str) -> defer.Deferred[RecipientLookup]:
        """The directory's answer, resolved by the plugins when it is not a mailbox."""
        return self._directory.lookup_recipient(address).addCallback(self._resolve)

    def _resolve(self, found: RecipientLookup) -> Any:
        if found.status not in RESOLVABLE or found.domain is None:
            return found
        plugins = self._plugins()
        if plugins is None or not plugins.implementations(HOOK):
            return RecipientLookup(Lookup.UNKNOWN_USER, found.address, found.domain)
        return self._directory.run(resolve_sync, plugins, found)
