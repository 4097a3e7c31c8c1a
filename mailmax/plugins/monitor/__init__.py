"""monitor: the domain's monitor account gets a copy of every message to the domain.

The monitor account is a user of the domain, set with ``mailmax domain edit D --monitor
USER``. Copies go through the same delivery as any recipient, once per message (the recipient
list is de-duplicated), including copies of mail forwarded inside the domain.
"""

from __future__ import annotations

from mailmax.plugin import PluginSettings, current_host, hookimpl

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain")


class Settings(PluginSettings):
    """The monitor account is a field of the domain, so the plugin has no settings."""


@hookimpl
def mailmax_expand_recipient(mailbox: str) -> list[str] | None:
    """``mailbox`` itself plus its domain's monitor account, when the domain has one."""
    _, at, domain = mailbox.rpartition("@")
    if not at:
        return None
    record = current_host().domain(domain)
    if record is None or not record.monitor:
        return None
    monitor = f"{record.monitor}@{record.name}"
    if monitor.lower() == mailbox.lower():
        return None
    return [mailbox, monitor]
