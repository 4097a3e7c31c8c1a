"""limits: the sending limits of domains and users, for authenticated senders.

- A domain's session limits (``mailmax domain edit --session-send-messages N
  --session-send-mb N``) bound what one session authenticated as one of its users may send:
  messages and megabytes. The ``[smtp] session_*_limit`` settings keep applying to every
  session on their own.
- A user's daily limits (``mailmax user edit --daily-messages N --daily-mb N
  --daily-limits``) bound what the user sends per UTC day. The day's counts are kept in the
  plugin's store in the directory, so they survive a restart and are shared by every node.

Checked at MAIL FROM (with the size the client announces with ``SIZE=``), and the daily
megabytes again at the end of DATA with the message's real size, before it is accepted; a
message counts once it is accepted, whatever its number of recipients. Over a limit the reply
is ``452 4.7.0`` naming the limit; a message larger than a whole limit is ``552 5.3.4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from mailmax.plugin import (
    Envelope,
    Field,
    PluginSettings,
    RecipientLookup,
    Session,
    User,
    current_host,
    hookimpl,
    reject,
    tempfail,
)
from mailmax.plugins.limits import counts

NAME = "limits"
#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "listener", "domain", "user")
#: Bytes in one of the limits' megabytes.
MB = 1024 * 1024


class Settings(PluginSettings):
    """Which of the directory's sending limits are enforced."""

    domain_session_limits: bool = Field(
        True, description="Apply each domain's session sending limits to its users' sessions."
    )
    daily_limits: bool = Field(
        True, description="Apply the daily sending limits of users who have them switched on."
    )


@dataclass
class DailyMegabytes:
    """The sender whose daily megabytes the end of DATA checks (noted at MAIL FROM, in the
    sender's scope; None: nothing to check)."""

    user: User | None = None


def _lookup(address: str) -> defer.Deferred[RecipientLookup]:
    host = current_host()
    if host.directory is not None:
        return host.directory.lookup_recipient(address)
    return defer.maybeDeferred(host.lookup, address)


def _over_size(size: int, limit_bytes: int, used: int, whole: str, reached: str) -> Any:
    """A refusal when a message of ``size`` after ``used`` bytes does not fit ``limit_bytes``."""
    if size > limit_bytes:
        return reject(whole, 552, "5.3.4")
    if used >= limit_bytes or used + size > limit_bytes:
        return tempfail(reached, 452, "4.7.0")
    return None


def session_verdict(session: Session, found: RecipientLookup, size: int) -> Any:
    """The refusal of a MAIL FROM over the session limits of the sender's domain, or None."""
    domain = found.domain
    if domain is None:
        return None
    whose = f"users of {domain.name}"
    messages = domain.session_send_messages
    if messages and session.messages >= messages:
        return tempfail(
            f"Session limit of {messages} messages for {whose} reached, reconnect to send more",
            452,
            "4.7.0",
        )
    mb = domain.session_send_mb
    if not mb:
        return None
    return _over_size(
        size,
        mb * MB,
        session.bytes_received,
        f"Message larger than the session limit of {mb} MB for {whose}",
        f"Session limit of {mb} MB for {whose} reached, reconnect to send more",
    )


def daily_verdict(user: Any, sent: counts.Sent, size: int) -> Any:
    """The refusal of a MAIL FROM over ``user``'s daily limits, or None."""
    who = user.address
    messages = user.daily_send_messages
    if messages and sent.messages >= messages:
        return tempfail(
            f"Daily sending limit of {messages} messages for {who} reached,"
            " try again after 00:00 UTC",
            452,
            "4.7.0",
        )
    mb = user.daily_send_mb
    if not mb:
        return None
    return _over_size(
        size,
        mb * MB,
        sent.bytes,
        f"Message larger than the daily sending limit of {mb} MB for {who}",
        f"Daily sending limit of {mb} MB for {who} reached, try again after 00:00 UTC",
    )


def _daily_limited(user: Any, config: Settings) -> bool:
    return bool(
        config.daily_limits
        and user.daily_limits_enabled
        and (user.daily_send_messages or user.daily_send_mb)
    )


async def _check(session: Session, envelope: Envelope, config: Settings) -> Any:
    assert session.auth_user is not None
    found = await _lookup(session.auth_user)
    if found.user is None:
        return None
    if config.domain_session_limits:
        refusal = session_verdict(session, found, envelope.size_hint)
        if refusal is not None:
            return refusal
    if not _daily_limited(found.user, config):
        return None
    host = current_host()
    day = counts.day_of(host.clock.seconds())
    sent = await counts.sent_on(host.for_plugin(NAME).kv, found.user.address, day)
    refusal = daily_verdict(found.user, sent, envelope.size_hint)
    if refusal is None and found.user.daily_send_mb:
        envelope.stash.put(DailyMegabytes(found.user))
    return refusal


async def _check_size(user: User, size: int) -> Any:
    host = current_host()
    day = counts.day_of(host.clock.seconds())
    sent = await counts.sent_on(host.for_plugin(NAME).kv, user.address, day)
    return daily_verdict(user, sent, size)


async def _count(session: Session, size: int, config: Settings) -> None:
    assert session.auth_user is not None
    found = await _lookup(session.auth_user)
    if found.user is None or not _daily_limited(found.user, config):
        return
    host = current_host()
    day = counts.day_of(host.clock.seconds())
    await counts.count(host.for_plugin(NAME).kv, found.user.address, day, size)


@hookimpl
def mailmax_mail_from(session: Session, envelope: Envelope, config: Settings) -> Any:
    """Refuse (452) a message of an authenticated sender over a session or daily limit."""
    if session.auth_user is None:
        return None
    return defer.ensureDeferred(_check(session, envelope, config))


@hookimpl
def mailmax_data(envelope: Envelope, message: bytes) -> Any:
    """Refuse a message whose real size goes over what its sender has left for the day."""
    user = envelope.stash.get(DailyMegabytes).user
    if user is None:
        return None
    return defer.ensureDeferred(_check_size(user, len(message)))


@hookimpl
def mailmax_message_accepted(session: Session, size: int, config: Settings) -> Any:
    """Count an accepted message toward its authenticated sender's daily limits."""
    if session.auth_user is None:
        return None
    return defer.ensureDeferred(_count(session, size, config))
