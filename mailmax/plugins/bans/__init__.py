"""bans: refuse banned clients and senders; mail to a spam trap bans its client.

Bans live in the directory (the table ``bans_entries``) and are managed with ``mailmax ban
add/list/delete``; a running server sees a change within ``refresh_seconds``, without a reload.

- A banned client IP or network is refused at connect (``554 5.7.1``) and at MAIL FROM.
- A banned sender address or domain (wildcards ``*`` and ``?``) is refused at MAIL FROM when
  the ban is system-wide or for the listening address, and at RCPT TO for the recipients of a
  domain that banned it (the check runs in the recipient's scope).
- A client that names a spam-trap account (a user of type ``spamtrap``) as a recipient gets
  its IP banned for ``spamtrap_ban_minutes`` (and, with ``spamtrap_ban_sender``, its envelope
  sender). The trap's RCPT is answered like any other, so the client cannot tell. Authenticated
  and trusted clients are never banned this way.

Replies never say why a ban was added nor which accounts exist.
"""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Any

from mailmax.plugin import (
    AccountType,
    Envelope,
    Field,
    PluginSettings,
    PluginTables,
    Recipient,
    Session,
    Verdict,
    current_host,
    every,
    hookimpl,
    reject,
)
from mailmax.plugins.bans import store
from mailmax.plugins.bans.live import live_bans
from mailmax.plugins.bans.patterns import CLIENT, SENDER, Ban

NAME = "bans"
#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "listener", "domain")
#: The plugin's own table, with its migrations.
TABLES = PluginTables(store.metadata, "migrations")


class Settings(PluginSettings):
    """How spam-trap hits ban, and how fresh the running server keeps its copy of the bans."""

    spamtrap_ban_ip: bool = Field(
        True, description="Mail to a spam trap bans the client's IP address."
    )
    spamtrap_ban_sender: bool = Field(
        False,
        description="Mail to a spam trap also bans its envelope sender (senders are easily"
        " forged: an innocent address may be banned).",
    )
    spamtrap_ban_minutes: float = Field(
        1440, gt=0, le=525600, description="How long a spam-trap ban lasts, in minutes."
    )
    spamtrap_ipv6_prefix: int = Field(
        64,
        ge=32,
        le=128,
        description="An IPv6 client is banned with its network of this prefix length.",
    )
    refresh_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How old the server's copy of the bans may get before it reads them"
        " again (0: at every check).",
    )


def _scopes(session: Session) -> list[tuple[str, str]]:
    return [(store.SYSTEM, ""), (store.LISTENER, session.local_ip)]


def _refused(context: Any, what: str, session: Session, ban: Ban) -> None:
    context.metrics.increment(f"refused.{what}")
    context.log.info(
        "refused {what} from {ip}: banned {kind} {pattern} ({scope}, {cause})",
        what=what,
        ip=session.peer_ip,
        kind=ban.kind,
        pattern=ban.pattern,
        scope=ban.scope if not ban.scope_value else f"{ban.scope} {ban.scope_value}",
        cause=ban.cause,
    )


@hookimpl
async def mailmax_connect(session: Session, config: Any) -> Verdict | None:
    """Refuse a banned client before the greeting."""
    context = current_host().for_plugin(NAME)
    index = await live_bans(context.host).current(context, config.refresh_seconds)
    ban = index.client(session.peer_ip, _scopes(session), context.host.clock.seconds())
    if ban is None:
        return None
    _refused(context, "connect", session, ban)
    return reject(f"Your address {session.peer_ip} is banned here", 554, "5.7.1")


@hookimpl
async def mailmax_mail_from(session: Session, sender: str, config: Any) -> Verdict | None:
    """Refuse a banned client (banned during its session) or a banned sender."""
    context = current_host().for_plugin(NAME)
    index = await live_bans(context.host).current(context, config.refresh_seconds)
    now = context.host.clock.seconds()
    scopes = _scopes(session)
    ban = index.client(session.peer_ip, scopes, now)
    if ban is not None:
        _refused(context, "mail", session, ban)
        return reject(f"Your address {session.peer_ip} is banned here", 550, "5.7.1")
    ban = index.sender(sender, scopes, now) if sender else None
    if ban is not None:
        _refused(context, "mail", session, ban)
        return reject(f"Mail from <{sender}> is refused here", 550, "5.7.1")
    return None


def _domains(recipient: Recipient) -> list[str]:
    names = [recipient.address.rpartition("@")[2].lower()]
    if recipient.mailbox:
        names.append(recipient.mailbox.rpartition("@")[2].lower())
    return list(dict.fromkeys(n for n in names if n))


@hookimpl
async def mailmax_rcpt_to(
    session: Session, envelope: Envelope, recipient: Recipient, config: Any
) -> Verdict | None:
    """Refuse a sender the recipient's domain banned; ban the client of a spam-trap hit."""
    host = current_host()
    context = host.for_plugin(NAME)
    if envelope.sender:
        index = await live_bans(host).current(context, config.refresh_seconds)
        domains = _domains(recipient)
        scopes = [(store.DOMAIN, name) for name in domains]
        ban = index.sender(envelope.sender, scopes, host.clock.seconds())
        if ban is not None:
            _refused(context, "rcpt", session, ban)
            return reject(
                f"Mail from <{envelope.sender}> is refused for {domains[0]}", 550, "5.7.1"
            )
    bans_trap_hits = config.spamtrap_ban_ip or config.spamtrap_ban_sender
    if bans_trap_hits and recipient.kind == "local" and recipient.mailbox and not _exempt(session):
        user = await host.get_user(recipient.mailbox)
        if user is not None and user.account_type is AccountType.SPAMTRAP:
            await _ban_trap_hit(context, session, envelope.sender, recipient.mailbox, config)
    return None


def _exempt(session: Session) -> bool:
    """Clients a spam-trap hit never bans: authenticated, trusted or allowed to relay."""
    return session.auth_user is not None or session.trusted or session.relay_allowed


def _client_network(ip: str, ipv6_prefix: int) -> str:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


async def _ban_trap_hit(
    context: Any, session: Session, sender: str, trap: str, config: Any
) -> None:
    now = context.host.clock.seconds()
    expires = now + config.spamtrap_ban_minutes * 60
    reason = f"mail to spam trap {trap} from <{sender}> by {session.peer_ip}"
    wanted: list[tuple[str, str]] = []
    if config.spamtrap_ban_ip:
        wanted.append((CLIENT, _client_network(session.peer_ip, config.spamtrap_ipv6_prefix)))
    if config.spamtrap_ban_sender and sender:
        wanted.append((SENDER, sender.lower()))
    for kind, pattern in wanted:
        add = partial(
            store.add,
            kind=kind,
            pattern=pattern,
            cause=store.SPAMTRAP,
            reason=reason,
            now=now,
            expires=expires,
            extend_only=True,
        )
        _, changed = await context.transaction(add, write=True)
        if changed:
            context.metrics.increment("spamtrap.bans")
            context.log.info(
                "banned {kind} {pattern} for {minutes:g} minutes: {reason}",
                kind=kind,
                pattern=pattern,
                minutes=config.spamtrap_ban_minutes,
                reason=reason,
            )
    live_bans(context.host).invalidate()


@every(3600)
def purge(context: Any) -> Any:
    """Delete bans that expired (they already no longer hold)."""
    now = context.host.clock.seconds()
    return context.transaction(store.purge, now, write=True)
