"""DNS block lists: the query name of a client address and which answers count as "listed".

A list is written ``zone`` or ``zone=CODES``: ``CODES`` are the answers that mean listed,
separated by spaces or commas, each an address (``127.0.0.2``) or a range
(``127.0.0.2-127.0.0.11``). Without codes every answer in ``127.0.0.0/8`` counts. Answers in
``127.255.255.0/24`` never count: list servers use them to say "query refused" (an open
resolver, too many queries).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

#: Answers that mean "your query was refused", never "listed".
REFUSED_ANSWERS = ipaddress.ip_network("127.255.255.0/24")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_DEFAULT_CODES = ((int(_LOOPBACK[0]), int(_LOOPBACK[-1])),)
_ZONE = re.compile(r"^(?=.{1,200}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]{1,63}$")


@dataclass(frozen=True)
class BlockList:
    """One list server: its DNS zone and the answers that mean "listed"."""

    zone: str
    codes: tuple[tuple[int, int], ...] = _DEFAULT_CODES

    def lists(self, answer: str) -> bool:
        """True when the answer ``answer`` (an IPv4 address) means "listed" here."""
        value = int(ipaddress.IPv4Address(answer))
        return any(low <= value <= high for low, high in self.codes)


@functools.lru_cache(maxsize=256)  # asked at every RCPT with the same few settings
def parse_list(text: str) -> BlockList:
    """A :class:`BlockList` from ``zone`` or ``zone=CODES``; ValueError saying what is wrong."""
    zone, _, codes = text.partition("=")
    zone = zone.strip().rstrip(".").lower()
    if not _ZONE.match(zone):
        raise ValueError(f"{text!r}: {zone!r} is not a DNS zone name")
    if not codes.strip():
        return BlockList(zone)
    ranges = []
    for item in re.split(r"[\s,]+", codes.strip()):
        low, _, high = item.partition("-")
        try:
            first = int(ipaddress.IPv4Address(low))
            last = int(ipaddress.IPv4Address(high)) if high else first
        except ValueError:
            raise ValueError(
                f"{text!r}: {item!r} is not an answer address or range (127.0.0.2-127.0.0.11)"
            ) from None
        if last < first:
            raise ValueError(f"{text!r}: the range {item!r} ends before it starts")
        ranges.append((first, last))
    return BlockList(zone, tuple(ranges))


def query_name(ip: str, zone: str) -> str:
    """The name to look up for the client ``ip`` at ``zone``: the reversed octets of an IPv4
    address (``4.3.2.1.zone``), the reversed nibbles of an IPv6 one (32 labels)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    pointer = address.reverse_pointer
    suffix = ".in-addr.arpa" if address.version == 4 else ".ip6.arpa"
    return f"{pointer[: -len(suffix)]}.{zone}"


def refused_answer(answer: str) -> bool:
    """True for an answer that says the list server refused the query."""
    return ipaddress.IPv4Address(answer) in REFUSED_ANSWERS
