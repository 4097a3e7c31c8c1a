"""forwarding: a user's mail also (or only) goes to other addresses, local or remote.

Settings (usually per user): ``targets`` (addresses), ``keep_local_copy``; the plugin's on/off
switch for the user is the forwarding's enabled flag::

    mailmax plugin set forwarding targets=bob@example.com,ann@other.example --user al@example.com
    mailmax plugin set forwarding keep_local_copy=false --user al@example.com
    mailmax plugin disable forwarding --user al@example.com

Local targets join the message's recipient list, which is de-duplicated, so forwarding between
local users never loops. Copies to remote targets are queued as a message of their own whose
envelope sender is rewritten with SRS (see :mod:`.srs`), so they keep passing SPF at the
destination; bounces to the rewritten address are accepted and returned to the original sender.

Users whose directory holds their forwarding (an LDAP source with a ``forward_to`` attribute)
forward to the addresses of that attribute instead of ``targets``; ``targets`` cannot be set for
them (change the attribute in LDAP). The other settings apply to them as to everyone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import field_validator
from twisted.internet import defer

from mailmax.plugin import (
    Envelope,
    Field,
    PluginHost,
    PluginSettings,
    User,
    Verdict,
    accept,
    current_host,
    hookimpl,
)
from mailmax.plugins.forwarding import srs

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain", "user")
MAX_TARGETS = 100


class Settings(PluginSettings):
    """Forwarding targets and SRS."""

    targets: list[str] = Field(
        default_factory=list, description="Addresses that get a copy (local or remote)."
    )
    keep_local_copy: bool = Field(True, description="Also store the mail in the user's mailbox.")
    srs: bool = Field(
        True, description="Rewrite the sender of mail forwarded to remote addresses (SRS)."
    )
    srs_domain: str = Field(
        "", description="Domain of rewritten senders; empty: the forwarding user's domain."
    )
    srs_secret: str = Field(
        "", description="SRS key (the same on every node); empty: a key made per installation."
    )
    srs_max_age_days: int = Field(
        21, ge=1, le=1000, description="Days a rewritten sender accepts bounces."
    )

    @field_validator("targets")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        if len(values) > MAX_TARGETS:
            raise ValueError(f"at most {MAX_TARGETS} targets")
        out: list[str] = []
        for value in values:
            address = normal_address(value)
            if address is None:
                raise ValueError(f"{value!r} is not an address like name@example.com")
            if address.lower() not in (o.lower() for o in out):
                out.append(address)
        return out


def normal_address(value: str) -> str | None:
    """``value`` as a forwarding target (the domain in lower case), or None when it is not an
    address like ``name@example.com``."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value.strip()):
        return None
    return f"{local}@{domain.lower()}"


def directory_settings(user: User) -> dict[str, tuple[Any, str]]:
    """The settings ``user``'s directory record holds: ``targets`` when an LDAP source maps
    the user's forwarding addresses, with where they come from."""
    if not user.forward_to_source:
        return {}
    return {"targets": (targets_of(Settings(), user), user.forward_to_source)}


def targets_of(config: Settings, user: User | None) -> list[str]:
    """Where ``user``'s mail is forwarded: the directory's addresses when it holds them (an
    entry that is not an address is left out, ``mailmax ldap test`` shows it), else
    ``config.targets``."""
    if user is None or not user.forward_to_source:
        return list(config.targets)
    out: list[str] = []
    for value in user.forward_to[:MAX_TARGETS]:
        address = normal_address(value)
        if address is not None and address.lower() not in (o.lower() for o in out):
            out.append(address)
    return out


def _secret(host: PluginHost, config: Settings) -> bytes:
    return config.srs_secret.encode() if config.srs_secret else host.secret("srs")


@hookimpl
def mailmax_expand_recipient(mailbox: str, config: Settings, user: User | None) -> list[str] | None:
    """The local targets join the recipients (the mailbox stays; see ``mailmax_deliver``)."""
    targets = targets_of(config, user)
    if not targets:
        return None
    host = current_host()
    local = [t for t in targets if host.is_local(t)]
    return [mailbox, *local] if local else None


def forward_sender(
    host: PluginHost, sender: str, mailbox: str, config: Settings | None = None
) -> str:
    """The envelope sender of a copy that ``mailbox`` forwards to another server: rewritten
    with SRS in the mailbox's domain (unless ``config`` switches SRS off), so bounces to it come
    back here and go on to ``sender``; ``<>`` stays ``<>``."""
    config = config or Settings()
    if not config.srs or not sender:
        return sender
    domain = config.srs_domain or mailbox.rpartition("@")[2]
    return srs.forward(sender, domain, _secret(host, config))


def copy_id(message_path: str, mailbox: str, mark: str = "f") -> str:
    """The queue id of the copy ``mailbox`` forwards of the queued message: the same at every
    try of that delivery, so a retried delivery never queues a second copy."""
    tag = hashlib.sha1(mailbox.lower().encode()).hexdigest()[:8]
    return f"{Path(message_path).name}-{mark}{tag}"


async def _deliver(
    host: PluginHost,
    mailbox: str,
    envelope: Envelope,
    message_path: str,
    config: Settings,
    targets: list[str],
) -> Verdict | None:
    remote = [t for t in targets if not host.is_local(t)]
    if remote:
        sender = forward_sender(host, envelope.sender, mailbox, config)
        await host.submit(sender, remote, message_path, queue_id=copy_id(message_path, mailbox))
    if config.keep_local_copy:
        return None
    known = {r.address.lower() for r in envelope.recipients}
    known |= {r.mailbox.lower() for r in envelope.recipients if r.mailbox}
    local = [t for t in targets if host.is_local(t)]
    if not remote and all(t.lower() in known for t in local):
        return None  # every target has the mail already: dropping this copy would lose it
    return accept("Forwarded; no local copy kept")


@hookimpl
def mailmax_deliver(
    mailbox: str, envelope: Envelope, message_path: str, config: Settings, user: User | None
) -> Any:
    """Queue the remote copies (SRS sender); drop the local copy when the user said so."""
    targets = targets_of(config, user)
    if not targets:
        return None
    host = current_host()
    return defer.ensureDeferred(_deliver(host, mailbox, envelope, message_path, config, targets))


@hookimpl
def mailmax_resolve_recipient(address: str, config: Settings) -> list[str] | None:
    """A bounce to one of our SRS addresses goes back to the original sender."""
    if not srs.is_srs(address):
        return None
    original = srs.reverse(address, _secret(current_host(), config), config.srs_max_age_days)
    return [original] if original else None
