"""sendercheck: an authenticated user sends only from addresses that are theirs.

After AUTH, MAIL FROM must be the login's own address, one of its aliases (a user alias that
delivers to it), the same address at one of its domain's aliases, or the null sender ``<>``.
Anything else gets ``553 5.7.1`` naming the login. The admin allows more per user or domain
(``allowed_senders``, ``any_sender``) or switches the check off there. Sessions that are not
authenticated are not checked.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from twisted.internet import defer

from mailmax.plugin import (
    Field,
    Lookup,
    PluginSettings,
    RecipientLookup,
    Session,
    current_host,
    hookimpl,
    reject,
)

NAME = "sendercheck"
#: Where the plugin can be switched on, off or configured (the scope is the login's).
SCOPES = ("system", "listener", "domain", "user")
#: Alias targets looked up at most when an alias names its targets in another form.
MAX_TARGETS = 20


class Settings(PluginSettings):
    """Which sender addresses an authenticated login may use besides its own."""

    any_sender: bool = Field(False, description="Let logins use any sender address.")
    allowed_senders: list[str] = Field(
        default_factory=list,
        description="More sender addresses logins may use: addresses or patterns such as"
        " '*@example.org' (case does not matter).",
    )


def allowed_by_settings(sender: str, config: Settings) -> bool:
    """True when ``config`` lets any login use ``sender``."""
    if config.any_sender:
        return True
    address = sender.lower()
    return any(fnmatch.fnmatchcase(address, pattern.lower()) for pattern in config.allowed_senders)


def _lookup(address: str) -> defer.Deferred[RecipientLookup]:
    host = current_host()
    if host.directory is not None:
        return host.directory.lookup_recipient(address)
    return defer.maybeDeferred(host.lookup, address)


async def owned_by(sender: str, login: str) -> bool:
    """True when ``sender`` is ``login``'s address, one of its aliases, or the same at one of
    its domain's aliases."""
    login = login.lower()
    if sender.lower() == login:
        return True
    found = await _lookup(sender)
    if found.status in (Lookup.USER, Lookup.DISABLED):
        return found.mailbox.lower() == login
    if found.status is not Lookup.ALIAS:
        return False
    targets = [target.lower() for target in found.targets]
    if login in targets:
        return True
    for target in targets[:MAX_TARGETS]:
        if (await _lookup(target)).mailbox.lower() == login:
            return True
    return False


async def _check(session: Session, sender: str, config: Settings) -> Any:
    login = session.auth_user
    assert login is not None
    if await owned_by(sender, login):
        return None
    current_host().for_plugin(NAME).log.info(
        "{login} may not send as <{sender}>", login=login, sender=sender
    )
    return reject(f"<{sender}>: Sender address rejected: not owned by user {login}", 553, "5.7.1")


@hookimpl
def mailmax_mail_from(session: Session, sender: str, config: Settings) -> Any:
    """Refuse (553 5.7.1) a sender address the authenticated login does not own."""
    if session.auth_user is None or not sender or allowed_by_settings(sender, config):
        return None
    return defer.ensureDeferred(_check(session, sender, config))
