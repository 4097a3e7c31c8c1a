"""What a ``mailmax_deliver`` plugin may decide for one recipient's copy of a message.

Besides a folder name and the verdicts, a plugin returns one of these (built with
:func:`deliver_to`, :func:`quarantine`, :func:`redirect` or :func:`discard`); MailMax fills in
which plugin decided, writes it to the mail log line of the delivery and, for a quarantined
copy, into an ``X-MailMax-Quarantine`` header of the stored message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

#: The folder a quarantined copy goes to when the plugin names none.
QUARANTINE_FOLDER = "Quarantine"
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


@dataclass(frozen=True)
class DeliveryDecision:
    """One recipient's outcome: ``kind`` is ``folder``, ``quarantine``, ``redirect`` or
    ``discard``; ``plugin`` names who decided (set by MailMax)."""

    kind: str
    folder: str = ""
    mailbox: str = ""
    addresses: tuple[str, ...] = ()
    reason: str = ""
    plugin: str = ""
    #: A file to store instead of the queued message (a changed copy), or ``""``.
    source: str = ""

    def by(self, plugin: str) -> DeliveryDecision:
        """A copy naming the plugin that decided."""
        return replace(self, plugin=plugin)

    def note(self) -> str:
        """A line for logs: what was decided, by whom and why."""
        what = {
            "folder": f"to folder {self.folder}",
            "quarantine": f"quarantined in {self.mailbox or 'the mailbox'}/{self.folder}",
            "redirect": f"redirected to {', '.join(self.addresses)}",
            "discard": "discarded",
        }[self.kind]
        who = f" by {self.plugin}" if self.plugin else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{what}{who}{why}"


def _folder(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a folder name (use 'Junk' or 'Archive.2026')")
    return name


def deliver_to(folder: str, reason: str = "", *, source: str = "") -> DeliveryDecision:
    """Store the copy in the recipient's ``folder`` (created when missing).

    With ``source``, store that file instead of the queued message: a changed copy the plugin
    wrote (and made durable) itself, without this delivery's ``Return-Path`` and
    ``Delivered-To`` lines, which MailMax adds. The plugin removes the file when it is no
    longer needed (a retried delivery may need it again).
    """
    return DeliveryDecision("folder", folder=_folder(folder), reason=reason, source=source)


def quarantine(
    reason: str, *, mailbox: str | None = None, folder: str = QUARANTINE_FOLDER
) -> DeliveryDecision:
    """Keep the copy out of the recipient's sight: store it in ``folder`` of ``mailbox`` (a
    local mailbox, e.g. ``quarantine@example.com``) or, without one, of the recipient's own
    mailbox. ``reason`` goes into the stored copy's ``X-MailMax-Quarantine`` header."""
    if mailbox is not None and not _ADDRESS.match(mailbox):
        raise ValueError(f"{mailbox!r} is not a mailbox address")
    return DeliveryDecision(
        "quarantine", folder=_folder(folder), mailbox=(mailbox or "").lower(), reason=reason
    )


def redirect(*addresses: str, reason: str = "") -> DeliveryDecision:
    """Send the copy to ``addresses`` instead (local or remote; each local one then gets its
    own delivery policy); the recipient keeps no copy."""
    if not addresses:
        raise ValueError("redirect needs at least one address")
    for address in addresses:
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise ValueError(f"{address!r} is not an address to redirect to")
    return DeliveryDecision("redirect", addresses=tuple(addresses), reason=reason)


def discard(reason: str = "") -> DeliveryDecision:
    """Drop the copy: nothing is stored, nobody is told (the mail log says who and why)."""
    return DeliveryDecision("discard", reason=reason)
