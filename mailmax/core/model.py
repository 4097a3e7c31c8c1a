"""The two nouns every SMTP hook receives: the :class:`Session` and the :class:`Envelope`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: The longest note a plugin may attach to a message (see :attr:`Envelope.notes`).
MAX_NOTE = 1000


class Stash:
    """Typed per-plugin state: one object per type, so plugins never share free-form dicts.

    ``session.stash.get(MyState)`` returns the instance stored for ``MyState`` or creates it
    with ``MyState()``.
    """

    def __init__(self) -> None:
        self._items: dict[type, Any] = {}

    def get(self, kind: type[T]) -> T:
        """The stored instance of ``kind``, created on first use."""
        if kind not in self._items:
            self._items[kind] = kind()
        return self._items[kind]

    def put(self, value: Any) -> None:
        """Store ``value`` under its own type."""
        self._items[type(value)] = value

    def pop(self, kind: type[T]) -> T | None:
        """Remove and return the instance of ``kind`` if there is one."""
        return self._items.pop(kind, None)


@dataclass(slots=True)
class Session:
    """One client connection as the policy layer sees it."""

    session_id: str
    peer_ip: str
    peer_port: int
    local_ip: str
    local_port: int
    service: str
    listener_domain: str = ""
    helo: str = ""
    esmtp: bool = False
    tls: bool = False
    auth_user: str | None = None
    #: Trust flags from the client's rights (see :mod:`mailmax.core.clientrights`): trusted
    #: (no restrictions), may relay, treated as authenticated for sending, local mail only,
    #: never looked up in DNS block lists.
    trusted: bool = False
    relay_allowed: bool = False
    auth_exempt: bool = False
    local_only: bool = False
    dnsbl_exempt: bool = False
    messages: int = 0
    bytes_received: int = 0
    stash: Stash = field(default_factory=Stash)

    @property
    def peer_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The client's IP as an ``ipaddress`` object."""
        return ipaddress.ip_address(self.peer_ip)

    @property
    def may_relay(self) -> bool:
        """True when this client may send mail to non-local domains."""
        if self.local_only:
            return False
        return self.auth_user is not None or self.relay_allowed or self.trusted or self.auth_exempt


@dataclass(slots=True)
class Recipient:
    """One RCPT TO address and what the directory made of it."""

    address: str
    #: "local" (a mailbox here), "relay" (another server) - set when RCPT is accepted.
    kind: str = "local"
    #: Canonical mailbox address (``user@domain``) for local recipients.
    mailbox: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Envelope:
    """One mail transaction: sender, recipients and, after DATA, the message."""

    sender: str
    params: dict[str, str] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    size_hint: int = 0
    stash: Stash = field(default_factory=Stash)
    #: Short notes plugins attach to the message (``plugin name -> text``): kept with it in
    #: the spool envelope and given back to the delivery, route and transit hooks. Set by
    #: ``mailmax_data`` (shared by every recipient group); at most :data:`MAX_NOTE` characters
    #: each.
    notes: dict[str, str] = field(default_factory=dict)


def kept_notes(notes: dict[str, str]) -> dict[str, str]:
    """The notes of :attr:`Envelope.notes` as the spool keeps them: text only, each cut to
    :data:`MAX_NOTE` characters (a plugin cannot make the envelope file grow unbounded)."""
    return {str(name)[:100]: str(text)[:MAX_NOTE] for name, text in notes.items()}
