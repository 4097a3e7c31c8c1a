"""catchall: mail to unknown names of a domain goes to the domain's catch-all account.

The catch-all account is a user of the domain, set with ``mailmax domain edit D --catch-all
USER``. With the plugin switched off for a domain (``mailmax plugin disable catchall --domain
D``) unknown names there are refused with 550 again. It runs after the other resolvers
(aliases, SRS bounce addresses), so those keep working in a domain with a catch-all.
"""

from __future__ import annotations

from mailmax.plugin import Lookup, PluginSettings, current_host, hookimpl

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain")


class Settings(PluginSettings):
    """The catch-all account is a field of the domain, so the plugin has no settings."""


@hookimpl
def mailmax_resolve_recipient(address: str) -> list[str] | None:
    """The domain's catch-all mailbox for an address that is nothing else here."""
    host = current_host()
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    record = host.domain(domain)
    if record is None or not record.catch_all:
        return None
    catcher = host.lookup(f"{record.catch_all}@{record.name}")
    if catcher.status is Lookup.USER and catcher.mailbox:
        return [catcher.mailbox]
    return None
