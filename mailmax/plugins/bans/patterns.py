"""What a ban names, and whether it matches: sender patterns with wildcards, client networks.

A **sender** pattern is an address (``spam@bad.example``) or a domain (``bad.example``: every
address at it); ``*`` stands for any run of characters and ``?`` for one, so
``*@*.bad.example`` names every address at any subdomain and ``news-*@shop.example`` a family
of senders. Matching ignores case. A **client** pattern is an IPv4 or IPv6 address or network
(``192.0.2.7``, ``198.51.100.0/24``, ``2001:db8::/32``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

#: The kinds of ban.
SENDER = "sender"
CLIENT = "ip"

#: Longest sender pattern (the longest address SMTP carries).
MAX_PATTERN = 320
_SENDER_CHARS = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.@\-]+$")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def classify(pattern: str) -> tuple[str, str]:
    """``(kind, normalized pattern)`` of what an admin typed; ``ValueError`` says what is wrong.

    Addresses and networks become client bans (``192.0.2.7/24`` is taken as its network);
    anything else must be a sender address or domain pattern.
    """
    text = pattern.strip()
    if not text:
        raise ValueError("a ban needs a sender address, a domain, or a client IP or network")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    else:
        if network.num_addresses == 1:
            return CLIENT, str(network.network_address)
        return CLIENT, str(network)
    text = text.lower().removeprefix("<").removesuffix(">")
    if len(text) > MAX_PATTERN:
        raise ValueError(f"a sender pattern is at most {MAX_PATTERN} characters")
    if not _SENDER_CHARS.match(text) or text.count("@") > 1 or text.endswith("@"):
        raise ValueError(
            f"{pattern!r} is neither a client IP or network nor a sender address or domain "
            "(wildcards: * and ?, as in *@bad.example or *.bad.example)"
        )
    if text.strip("*?.@") == "":
        raise ValueError(f"{pattern!r} would ban every sender; name a domain or an address")
    return SENDER, text


def sender_regex(pattern: str) -> re.Pattern[str]:
    """The compiled form of a sender pattern, matched against a lower-case address."""
    if "@" not in pattern:
        pattern = "*@" + pattern  # a domain: every address at it
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + r"\Z")


def has_wildcard(pattern: str) -> bool:
    """Whether a sender pattern uses ``*`` or ``?``."""
    return "*" in pattern or "?" in pattern


@dataclass(frozen=True)
class Ban:
    """One ban as stored: what it names, where it holds, why and until when."""

    id: int
    kind: str
    pattern: str
    #: ``system``, ``listener`` (a listening address) or ``domain`` (a recipient domain).
    scope: str
    scope_value: str
    cause: str
    reason: str
    added: float
    expires: float | None

    def live(self, now: float) -> bool:
        """Whether the ban holds at ``now`` (clock seconds)."""
        return self.expires is None or self.expires > now


@dataclass
class BanIndex:
    """The live bans arranged for quick checks: exact names in dicts, the rest in lists."""

    exact_ips: dict[tuple[str, str, str], Ban] = field(default_factory=dict)
    networks: list[tuple[_Network, Ban]] = field(default_factory=list)
    exact_senders: dict[tuple[str, str, str], Ban] = field(default_factory=dict)
    wildcards: list[tuple[re.Pattern[str], Ban]] = field(default_factory=list)

    @classmethod
    def build(cls, bans: list[Ban]) -> BanIndex:
        """Index ``bans`` (their expiry is checked at each look-up)."""
        index = cls()
        for ban in bans:
            where = (ban.scope, ban.scope_value)
            if ban.kind == CLIENT:
                network = ipaddress.ip_network(ban.pattern, strict=False)
                if network.num_addresses == 1:
                    index.exact_ips[(*where, str(network.network_address))] = ban
                else:
                    index.networks.append((network, ban))
            elif has_wildcard(ban.pattern):
                index.wildcards.append((sender_regex(ban.pattern), ban))
            else:
                index.exact_senders[(*where, ban.pattern)] = ban
        return index

    def client(self, ip: str, scopes: list[tuple[str, str]], now: float) -> Ban | None:
        """The live ban of client ``ip`` in one of ``scopes``, or None."""
        if not self.exact_ips and not self.networks:
            return None  # no client bans at all: no address to parse
        address: Any = ipaddress.ip_address(ip)
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        text = str(address)
        for where in scopes:
            ban = self.exact_ips.get((*where, text))
            if ban is not None and ban.live(now):
                return ban
        for network, ban in self.networks:
            in_scope = (ban.scope, ban.scope_value) in scopes and ban.live(now)
            if in_scope and address.version == network.version and address in network:
                return ban
        return None

    def sender(self, sender: str, scopes: list[tuple[str, str]], now: float) -> Ban | None:
        """The live ban of the address ``sender`` in one of ``scopes``, or None."""
        if not self.exact_senders and not self.wildcards:
            return None
        address = sender.lower()
        domain = address.rpartition("@")[2]
        for where in scopes:
            for key in (address, domain):
                ban = self.exact_senders.get((*where, key))
                if ban is not None and ban.live(now):
                    return ban
        for regex, ban in self.wildcards:
            in_scope = (ban.scope, ban.scope_value) in scopes and ban.live(now)
            if in_scope and regex.match(address):
                return ban
        return None
