"""access: connection control - ordered IP rules decide who may connect and with which rights.

Rules live in the directory (the table ``access_rules``) and are managed with ``mailmax access
add/list/move/delete``; a running server sees a change within ``refresh_seconds``, without a
reload. There is one system-wide list and one list per listening address. A client's address is
tried against its listening address's list, then the system-wide list, then the networks of
``[smtp] trusted_networks`` (trusted) and ``[connections] exempt_networks`` (exempt from
connection limits); the first rule that matches decides:

- ``permitted``: normal access; ``trusted``: no restrictions (may relay and send without
  AUTH, no DNS block-list check, no connection limits);
- ``banned``: SMTP greets with ``554 5.7.1`` and answers ``503`` to every command but QUIT;
  POP3 and IMAP close at once; the refusal is logged;
- ``custom``: the flags named - no-open-relay-check, allow-relaying, local-mail-only,
  no-auth-required, exempt-from-connection-limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.plugin import (
    ClientRights,
    Field,
    PluginSettings,
    PluginTables,
    Session,
    Verdict,
    config_rules,
    current_host,
    every,
    hookimpl,
    reject,
)
from mailmax.plugins.access import store
from mailmax.plugins.access.live import live_rules
from mailmax.plugins.access.rules import Matcher, parse_pattern

NAME = "access"
#: Where the plugin can be switched on, off or configured (connections have no domain yet).
SCOPES = ("system", "listener")
#: The plugin's own table, with its migrations.
TABLES = PluginTables(store.metadata, "migrations")

log = Logger(namespace="mailmax.plugins.access")


class Settings(PluginSettings):
    """How fresh the running server keeps its copy of the access rules."""

    refresh_seconds: float = Field(
        2.0,
        ge=0.5,
        le=60,
        description="How old the server's copy of the access rules may get before it reads"
        " them again.",
    )


class _Implied:
    """The configuration's networks as matchers, built again only when the settings change."""

    def __init__(self) -> None:
        self.settings: Any = None
        self.matchers: list[Matcher] = []

    def of(self, settings: Any) -> list[Matcher]:
        if settings is None:
            return []
        if settings is not self.settings:
            self.matchers = [
                Matcher(parse_pattern(network), replace(rights, rule=f"[{name}] {network}"))
                for name, network, rights in config_rules(settings)
            ]
            self.settings = settings
        return self.matchers


_IMPLIED = _Implied()


@dataclass
class _Listening:
    """The listening address of a session, as ``mailmax_client_rights`` was told it."""

    address: str = ""


def _decide(host: Any, index: Any, session: Session, listener: str) -> ClientRights:
    listeners = [listener, session.local_ip]
    rights = index.decide(session.peer_ip, listeners, _IMPLIED.of(host.settings))
    if rights.banned:
        return replace(rights, reason=f"Connections from {session.peer_ip} are refused here")
    return rights


def _read_failed(failure: Any) -> None:
    log.failure("reading the access rules failed", failure)


@hookimpl
def mailmax_client_rights(session: Session, listener: str, config: Any) -> ClientRights:
    """The rights of the first matching rule, from the copy of the rules in memory (a read of
    the table starts when the copy is too old)."""
    host = current_host()
    session.stash.put(_Listening(listener))
    live = live_rules(host)
    if not live.fresh(host.clock.seconds(), config.refresh_seconds):
        defer.ensureDeferred(live.read(host.for_plugin(NAME))).addErrback(_read_failed)
    return _decide(host, live.value, session, listener)


@hookimpl
async def mailmax_connect(session: Session, config: Any) -> Verdict | None:
    """Decide again with rules at most ``refresh_seconds`` old; refuse a banned client."""
    host = current_host()
    context = host.for_plugin(NAME)
    index = await live_rules(host).current(context, config.refresh_seconds)
    listener = session.stash.get(_Listening).address or session.local_ip
    rights = _decide(host, index, session, listener)
    rights.apply(session)
    if not rights.banned:
        return None
    context.metrics.increment("refused.connect")
    context.log.info(
        "refused connection from {ip}: banned by {rule}", ip=session.peer_ip, rule=rights.rule
    )
    return reject(rights.reason, 554, "5.7.1")


@hookimpl
def mailmax_configure(config: Any) -> None:
    """Start reading the rules as soon as the plugin set is built (this code is new after a
    reload, and so is its copy of the rules)."""
    try:
        host = current_host()
    except RuntimeError:  # a set built without a server (`mailmax plugin check`)
        return
    live = live_rules(host)
    if live.loaded_at is None:
        # On a first start the table is created after this: the scheduled read gets it then.
        defer.ensureDeferred(live.read(host.for_plugin(NAME))).addErrback(lambda _: None)


@every("refresh_seconds")
async def refresh(context: Any) -> None:
    """Read the rules again, so the synchronous answers stay fresh."""
    await live_rules(context.host).read(context)
