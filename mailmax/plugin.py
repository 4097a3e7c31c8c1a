"""The public API for MailMax plugins: everything a plugin needs, from one module.

::

    from mailmax.plugin import Field, PluginSettings, hookimpl, reject

    class Settings(PluginSettings):
        blocked: list[str] = Field(default_factory=list, description="Refused HELO names.")

    @hookimpl
    def mailmax_helo(session, helo, config):
        if helo.lower() in config.blocked:
            return reject("Go away", 550, "5.7.1")

See ``docs/plugins.md`` for the hooks and how plugins are enabled, configured and tested.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mailmax.core.admin import AdminError
from mailmax.core.clientrights import PERMITTED, TRUSTED, ClientRights, config_rules
from mailmax.core.config import check_networks
from mailmax.core.directory.api import (
    AccountType,
    Domain,
    DomainType,
    Lookup,
    RecipientLookup,
    User,
)
from mailmax.core.hooks import CURRENT_HOST, PluginError, Scope
from mailmax.core.hookspecs import hookimpl
from mailmax.core.livecopy import LiveCopy
from mailmax.core.model import Envelope, Recipient, Session, Stash
from mailmax.core.outbound.dns import DNSTemporaryError, MXHost
from mailmax.core.outbound.route import Engine, Route, host_port
from mailmax.core.pluginhost.changes import ChangeError, MessageChanges
from mailmax.core.pluginhost.host import PluginHost
from mailmax.core.pluginhost.metrics import PluginMetrics
from mailmax.core.pluginhost.outcomes import (
    DeliveryDecision,
    deliver_to,
    discard,
    quarantine,
    redirect,
)
from mailmax.core.pluginhost.schedule import daily, every
from mailmax.core.pluginhost.services import HostResolver, PluginContext
from mailmax.core.pluginhost.settings import SYSTEM_ONLY, PluginSettings
from mailmax.core.pluginhost.storage import KeyValueStore, PluginTables, StorageError
from mailmax.core.verdicts import Action, Verdict, accept, cont, disconnect, reject, tempfail


def current_host() -> PluginHost:
    """The running server's :class:`PluginHost`, inside a hook call.

    Call it in the hook's body (anywhere in an ``async def`` hook, and in a scheduled task);
    a callback added to a Deferred runs later, outside the hook: take the host first. Raises
    ``RuntimeError`` outside a hook or when the plugin set has no host (a set built without
    a server).
    """
    host: Any = CURRENT_HOST.get()
    if host is None:
        raise RuntimeError("current_host() is only available while MailMax runs a hook")
    return host


__all__ = [
    "PERMITTED",
    "SYSTEM_ONLY",
    "TRUSTED",
    "AccountType",
    "Action",
    "AdminError",
    "ChangeError",
    "ClientRights",
    "DNSTemporaryError",
    "DeliveryDecision",
    "Domain",
    "DomainType",
    "Engine",
    "Envelope",
    "Field",
    "HostResolver",
    "KeyValueStore",
    "LiveCopy",
    "Lookup",
    "MXHost",
    "MessageChanges",
    "PluginContext",
    "PluginError",
    "PluginHost",
    "PluginMetrics",
    "PluginSettings",
    "PluginTables",
    "Recipient",
    "RecipientLookup",
    "Route",
    "Scope",
    "Session",
    "Stash",
    "StorageError",
    "User",
    "Verdict",
    "accept",
    "check_networks",
    "config_rules",
    "cont",
    "current_host",
    "daily",
    "deliver_to",
    "discard",
    "disconnect",
    "every",
    "hookimpl",
    "host_port",
    "quarantine",
    "redirect",
    "reject",
    "tempfail",
]
