"""Access rules: which client addresses a rule names, what it grants, and the first match.

An address pattern is one IPv4 address (``192.0.2.7``), an IPv4 pattern whose parts are numbers,
ranges or ``*`` (``192.0.2.1-20``, ``192.0.*.*``, ``147.89.8-15.*``; a trailing ``*`` stands
for the parts left out, so ``10.*`` is ``10.*.*.*``), or an IPv4 or IPv6 address or network
(``198.51.100.0/24``, ``2001:db8::1``, ``2001:db8::/32``). An IPv4 client that reaches an IPv6
listener as ``::ffff:192.0.2.7`` matches the IPv4 patterns.

A rule's kind is ``permitted`` (normal access), ``trusted`` (no restrictions), ``banned``
(refused) or ``custom`` (the flags it names).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailmax.plugin import PERMITTED, TRUSTED, ClientRights

PERMITTED_KIND = "permitted"
TRUSTED_KIND = "trusted"
BANNED_KIND = "banned"
CUSTOM_KIND = "custom"
KINDS = (PERMITTED_KIND, TRUSTED_KIND, BANNED_KIND, CUSTOM_KIND)

#: The flags of a custom rule, and the right each grants.
FLAGS = {
    "no-open-relay-check": "dnsbl_exempt",
    "allow-relaying": "relay_allowed",
    "local-mail-only": "local_only",
    "no-auth-required": "auth_exempt",
    "exempt-from-connection-limits": "limits_exempt",
}

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PART = re.compile(r"^(\d{1,3})(?:-(\d{1,3}))?$")


@dataclass(frozen=True)
class AddressPattern:
    """The client addresses a rule names: a network, or four IPv4 part ranges."""

    text: str
    network: _Network | None = None
    parts: tuple[tuple[int, int], ...] = ()

    def matches(self, address: _Address) -> bool:
        """True when ``address`` (IPv4-mapped IPv6 already unwrapped) is named here."""
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        if address.version != 4:
            return False
        octets = address.packed
        return all(
            low <= octet <= high for octet, (low, high) in zip(octets, self.parts, strict=True)
        )


def parse_pattern(text: str) -> AddressPattern:
    """The :class:`AddressPattern` of what an admin typed; ``ValueError`` says what is wrong."""
    value = text.strip()
    if not value:
        raise ValueError("a rule needs an IP address, range, pattern or network")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        pass
    else:
        if network.num_addresses == 1:
            return AddressPattern(str(network.network_address), network)
        return AddressPattern(str(network), network)
    words = value.split(".")
    if words[-1] == "*" and len(words) < 4:
        words += ["*"] * (4 - len(words))
    parts = [_part(word, value) for word in words] if len(words) == 4 else []
    if not parts:
        raise ValueError(
            f"{text!r} is not an IP address, range or network: write 192.0.2.7, 192.0.2.1-20, "
            "192.0.*.*, 198.51.100.0/24 or 2001:db8::/32"
        )
    if all(part == (0, 255) for part in parts):
        return AddressPattern("0.0.0.0/0", ipaddress.ip_network("0.0.0.0/0"))
    shown = ".".join(
        "*" if (low, high) == (0, 255) else str(low) if low == high else f"{low}-{high}"
        for low, high in parts
    )
    return AddressPattern(shown, None, tuple(parts))


def _part(word: str, whole: str) -> tuple[int, int]:
    if word == "*":
        return 0, 255
    match = _PART.match(word)
    low = int(match.group(1)) if match else -1
    high = int(match.group(2) or low) if match else -1
    if not (0 <= low <= high <= 255):
        raise ValueError(
            f"{whole!r}: {word!r} is not a number from 0 to 255, a range such as 1-20, or *"
        )
    return low, high


@functools.lru_cache(maxsize=4096)  # asked twice per connection, mostly by the same clients
def client_address(ip: str) -> _Address | None:
    """``ip`` as an address object (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_flags(kind: str, flags: Iterable[str]) -> tuple[str, ...]:
    """The flags of a rule of ``kind``, checked and in their canonical order."""
    if kind not in KINDS:
        raise ValueError(f"a rule is {', '.join(KINDS)}, not {kind!r}")
    wanted = {flag.strip().lower() for flag in flags if flag.strip()}
    unknown = sorted(wanted - set(FLAGS))
    if unknown:
        raise ValueError(f"unknown flag {unknown[0]!r}; the flags are {', '.join(FLAGS)}")
    if wanted and kind != CUSTOM_KIND:
        raise ValueError(f"flags belong to custom rules; a {kind} rule takes none")
    if kind == CUSTOM_KIND and not wanted:
        raise ValueError(f"a custom rule needs at least one flag: {', '.join(FLAGS)}")
    if {"allow-relaying", "local-mail-only"} <= wanted:
        raise ValueError("allow-relaying and local-mail-only contradict each other")
    return tuple(flag for flag in FLAGS if flag in wanted)


@dataclass(frozen=True)
class Rule:
    """One stored rule: where it holds (system-wide, or for one listening address), its place
    in that list, the addresses it names and what it grants."""

    id: int
    scope: str
    listener: str
    position: int
    pattern: str
    kind: str
    flags: tuple[str, ...] = ()
    comment: str = ""

    @property
    def where(self) -> str:
        """``system`` or ``listener <address>``."""
        return "system" if not self.listener else f"listener {self.listener}"

    def rights(self) -> ClientRights:
        """What a client this rule matches may do."""
        label = f"access rule {self.pattern} ({self.where})"
        return rights_of(self.kind, self.flags, label)


def rights_of(kind: str, flags: Sequence[str], label: str) -> ClientRights:
    """The :class:`ClientRights` of a rule of ``kind`` with ``flags``, naming ``label``."""
    if kind == BANNED_KIND:
        return ClientRights(banned=True, reason="", rule=label)
    if kind == TRUSTED_KIND:
        return ClientRights(**{**_fields(TRUSTED), "rule": label})
    granted = {FLAGS[flag]: True for flag in flags}
    return ClientRights(**{**_fields(PERMITTED), **granted, "rule": label})


def _fields(rights: ClientRights) -> dict[str, object]:
    return {name: getattr(rights, name) for name in rights.__slots__}


@dataclass(frozen=True)
class Matcher:
    """A rule (or a network from the configuration) made ready to match."""

    pattern: AddressPattern
    rights: ClientRights


class RuleIndex:
    """The rules of every list, in order, ready to answer :meth:`decide`."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.system: list[Matcher] = []
        self.listeners: dict[str, list[Matcher]] = {}
        for rule in sorted(rules, key=lambda r: (r.listener, r.position, r.id)):
            matcher = Matcher(parse_pattern(rule.pattern), rule.rights())
            if rule.listener:
                self.listeners.setdefault(rule.listener, []).append(matcher)
            else:
                self.system.append(matcher)

    def decide(self, ip: str, listeners: Sequence[str], implied: Sequence[Matcher]) -> ClientRights:
        """The rights of the first rule matching ``ip``: the lists of ``listeners`` first, then
        the system-wide list, then ``implied`` (the configuration's); else normal access."""
        address = client_address(ip)
        if address is None:
            return PERMITTED
        lists = [self.listeners.get(name, ()) for name in dict.fromkeys(listeners)]
        for matchers in [*lists, self.system, implied]:
            for matcher in matchers:
                if matcher.pattern.matches(address):
                    return matcher.rights
        return PERMITTED
