"""spamtrap: mail to a spam-trap account is accepted, not stored, and recorded.

A spam trap is a user whose account type is ``spamtrap`` (``mailmax user add ADDRESS
--type spamtrap``). Senders cannot tell it from a real mailbox; every message to it is
discarded at delivery and recorded as a ``spamtrap`` event (sender, trap, queue id) in
``<data>/events/spamtrap.jsonl``, for the bans feature to act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer

from mailmax.plugin import (
    AccountType,
    Envelope,
    PluginHost,
    PluginSettings,
    Verdict,
    accept,
    current_host,
    hookimpl,
)

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain", "user")
#: The kind of event recorded for every message to a trap.
EVENT = "spamtrap"


class Settings(PluginSettings):
    """The trap accounts are users of type ``spamtrap``, so the plugin has no settings."""


async def _deliver(
    host: PluginHost, mailbox: str, envelope: Envelope, message_path: str
) -> Verdict | None:
    user = await host.get_user(mailbox)
    if user is None or user.account_type is not AccountType.SPAMTRAP:
        return None
    await host.record_event(
        EVENT,
        sender=envelope.sender,
        trap=mailbox,
        queue_id=Path(message_path).name,
        size=envelope.size_hint,
    )
    return accept("Spam trap: recorded, not stored")


@hookimpl
def mailmax_deliver(mailbox: str, envelope: Envelope, message_path: str) -> Any:
    """Discard (and record) mail to a spam trap; no opinion for other mailboxes."""
    return defer.ensureDeferred(_deliver(current_host(), mailbox, envelope, message_path))
