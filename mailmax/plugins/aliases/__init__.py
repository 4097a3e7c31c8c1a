"""aliases: user aliases, also in aliased domains.

An alias is an address with no mailbox of its own that delivers to its targets. The directory
stores aliases and domain aliases and refuses any that would shadow a user or a real domain
(``mailmax alias add``, ``mailmax domain alias add``); this plugin decides where they apply:
with it switched off for a domain, mail to that domain's aliases is refused as unknown.
"""

from __future__ import annotations

from mailmax.plugin import Lookup, PluginSettings, current_host, hookimpl

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain")


class Settings(PluginSettings):
    """The aliases plugin has no settings: the aliases themselves live in the directory."""


@hookimpl
def mailmax_resolve_recipient(address: str) -> list[str] | None:
    """The targets of the user alias at ``address`` (a domain alias may name its domain)."""
    found = current_host().lookup(address)
    if found.status is Lookup.ALIAS and found.targets:
        return list(found.targets)
    return None
