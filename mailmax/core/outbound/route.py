"""Where the mail for one destination domain goes: a :class:`Route` of delivery engines.

The ``mailmax_route`` hook answers with a :class:`Route`; without an answer every domain is
delivered straight to its MX hosts (:func:`direct`). A route lists one or more
:class:`Engine` s, tried in order within one delivery attempt: the internal engine (MX
look-up) or a fixed host (a smart host, a relay-to-host delivery address). A route can also
hold the mail (ETRN domains), restrict MX hosts to those preferred over this server (backup
MX), and mark the mail as passing through (the ``mailmax_transit`` hook runs for it).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Literal

TLSPolicy = Literal["none", "may", "encrypt", "verify"]
TLS_POLICIES: tuple[str, ...] = ("none", "may", "encrypt", "verify")


@dataclass(frozen=True, slots=True)
class Engine:
    """One way to deliver: direct MX delivery (``host`` empty) or a fixed host.

    ``host`` is a host name or an IP address (``[2001:db8::1]`` for IPv6); its addresses are
    looked up, never its MX records. ``port`` 0 means ``[queue] remote_port`` for direct
    delivery and 25 for a host. ``tls`` is the STARTTLS policy (``""``: ``[queue] tls``);
    ``username``/``password`` are sent with AUTH (only over TLS). ``name`` is what logs and
    the queue show.
    """

    name: str = "direct"
    host: str = ""
    port: int = 0
    tls: str = ""
    username: str = ""
    password: str = ""
    #: Direct delivery only: use MX hosts with a preference lower than this (backup MX).
    below_preference: int | None = None

    def __post_init__(self) -> None:
        if self.tls and self.tls not in TLS_POLICIES:
            raise ValueError(f"engine {self.name}: tls must be one of {TLS_POLICIES}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"engine {self.name}: port must be 0-65535")
        if self.username and not self.password:
            raise ValueError(f"engine {self.name}: a username needs a password")

    @property
    def direct(self) -> bool:
        """True for the internal (MX look-up) engine."""
        return not self.host

    def __repr__(self) -> str:  # never show the password
        return f"Engine(name={self.name!r}, host={self.host!r}, port={self.port})"


@dataclass(frozen=True, slots=True)
class Route:
    """How the mail for one destination domain is delivered.

    ``engines`` are tried in order in every attempt (the next after a failure). ``hold``
    keeps the mail in the hold directory until ETRN releases it (then the engines deliver
    it). ``transit`` runs the ``mailmax_transit`` hook first. ``patient_days``: temporary
    failures are retried every ``retry_minutes`` for that many days, with no warning
    (backup MX). ``name`` labels the route in logs (``"smart host"``, ``"backup"``...).
    ``pass_notes``: the destination is a node of this server's cluster, which trusts the notes
    plugins attached to the message here: they go along (see :func:`notes_parameter`).
    """

    engines: tuple[Engine, ...] = field(default_factory=lambda: (Engine(),))
    hold: bool = False
    transit: bool = False
    patient_days: float | None = None
    name: str = "direct"
    pass_notes: bool = False

    def __post_init__(self) -> None:
        if not self.engines:
            raise ValueError(f"route {self.name}: at least one delivery engine is needed")


def host_port(text: str, default: int = 25) -> tuple[str, int]:
    """``host``, ``host:port``, ``[IPv6]`` or ``[IPv6]:port`` as (host, port); ValueError else."""
    value = text.strip()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 host as [address] or [address]:port")
        value, port = inside, rest[1:]
    elif value.count(":") == 1:
        value, port = value.split(":")
    else:
        port = ""
    if not value or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        raise ValueError(f"{text!r}: write host or host:port")
    return value, int(port) if port else default


#: The MAIL parameter that carries a message's plugin notes to a peer node.
NOTES_PARAMETER = "X-MAILMAX-NOTES"


def notes_parameter(notes: dict[str, str]) -> str:
    """`` X-MAILMAX-NOTES=...`` for the MAIL command (``""`` without notes): the notes as JSON
    in unpadded URL-safe base64, which is a valid ESMTP parameter value."""
    if not notes:
        return ""
    data = base64.urlsafe_b64encode(json.dumps(notes, sort_keys=True).encode()).rstrip(b"=")
    return f" {NOTES_PARAMETER}={data.decode()}"


def parse_notes(value: str) -> dict[str, str]:
    """The notes of a :func:`notes_parameter` value (ValueError when it is not one)."""
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        notes = json.loads(data)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"bad {NOTES_PARAMETER} value: {exc}") from None
    if not isinstance(notes, dict):
        raise ValueError(f"bad {NOTES_PARAMETER} value: not an object")
    return {str(name): str(text) for name, text in notes.items()}


def direct() -> Route:
    """The default route: the internal engine, straight to the domain's MX hosts."""
    return Route()
