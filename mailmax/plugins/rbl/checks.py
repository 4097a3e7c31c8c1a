"""The three look-ups of the rbl plugin, each giving a :class:`Finding` or ``None`` (passed).

Every look-up goes through the host's resolver (``current_host().dns``); a DNS that does not
answer gives a *temporary* finding, never a refusal for good.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.plugin import DNSTemporaryError
from mailmax.plugins.rbl.lists import BlockList, query_name, refused_answer

log = Logger(namespace="mailmax.plugins.rbl")
#: Reverse names whose forward addresses are checked at most.
MAX_PTR_NAMES = 5


@dataclass(frozen=True)
class Finding:
    """What a check found: ``check`` (``dnsbl``, ``reverse_dns``, ``sender_domain``), the reply
    ``code``, ``status`` and ``text``; ``temporary`` when the DNS did not answer."""

    check: str
    code: int
    status: str
    text: str
    temporary: bool = False


def _temporary(check: str, what: str) -> Finding:
    return Finding(check, 451, "4.4.3", f"DNS look-up of {what} failed, try again later", True)


async def _listed_at(dns: Any, ip: str, block: BlockList) -> str | None:
    """The reason ``ip`` is listed at ``block`` (its TXT record or a standard text), or None."""
    name = query_name(ip, block.zone)
    answers = await dns.a(name)
    refused = [a for a in answers if refused_answer(a)]
    if refused:
        log.warn(
            "list server {zone} refused the query for {ip} (answer {answer}): ignored",
            zone=block.zone,
            ip=ip,
            answer=refused[0],
        )
    listed = [a for a in answers if not refused_answer(a) and block.lists(a)]
    if not listed:
        return None
    try:
        texts = await dns.txt(name)
    except DNSTemporaryError:
        texts = []
    return texts[0] if texts else f"answer {listed[0]}"


async def dnsbl(dns: Any, ip: str, blocks: Sequence[BlockList]) -> Finding | None:
    """Ask every list at once; the first listing in the lists' order refuses."""
    results: list[tuple[bool, Any]] = await defer.DeferredList(
        [defer.ensureDeferred(_listed_at(dns, ip, block)) for block in blocks],
        consumeErrors=True,
    )
    failed = []
    for block, (ok, value) in zip(blocks, results, strict=True):
        if not ok:
            if not value.check(DNSTemporaryError):
                log.failure("block list look-up at {zone} failed", value, zone=block.zone)
            failed.append(block.zone)
        elif value is not None:
            return Finding(
                "dnsbl", 554, "5.7.1", f"Client host [{ip}] listed at {block.zone}: {value}"
            )
    if failed:
        return _temporary("dnsbl", f"[{ip}] at {failed[0]}")
    return None


async def reverse_dns(dns: Any, ip: str) -> Finding | None:
    """The client needs a reverse (PTR) name that resolves back to its address."""
    try:
        names = await dns.ptr(ip)
    except DNSTemporaryError:
        return _temporary("reverse_dns", f"the reverse name of [{ip}]")
    if not names:
        return Finding(
            "reverse_dns", 550, "5.7.25", f"Client host [{ip}] has no reverse DNS (PTR) name"
        )
    wanted = ipaddress.ip_address(ip)
    results = await defer.DeferredList(
        [dns.addresses(name) for name in names[:MAX_PTR_NAMES]], consumeErrors=True
    )
    temporary = False
    for ok, value in results:
        if not ok:
            temporary = True
            continue
        if any(_same(wanted, address) for address in value):
            return None
    if temporary:
        return _temporary("reverse_dns", f"the addresses of {names[0]}")
    return Finding(
        "reverse_dns",
        550,
        "5.7.25",
        f"Client host [{ip}]: its reverse DNS name {names[0]} does not resolve back to it",
    )


def _same(wanted: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == wanted
    except ValueError:
        return False


async def sender_domain(dns: Any, sender: str) -> Finding | None:
    """The MAIL FROM domain must accept mail: an MX, or an address (A/AAAA) without MX; a null
    MX (RFC 7505) refuses. The null sender and address literals are not checked."""
    domain = sender.rpartition("@")[2].rstrip(".").lower()
    if not sender or not domain or domain.startswith("["):
        return None
    try:
        await dns.mx(domain)
    except DNSTemporaryError:
        return _temporary("sender_domain", f"the sender domain {domain}")
    except Exception as exc:  # the resolver's permanent answer: no such domain, null MX
        diagnostic = str(getattr(exc, "diagnostic", ""))
        if diagnostic.startswith("556"):
            return Finding(
                "sender_domain", 550, "5.7.27", f"Sender domain {domain} accepts no mail (null MX)"
            )
        if not diagnostic:
            raise
        return Finding(
            "sender_domain",
            550,
            "5.1.8",
            f"Sender address rejected: domain {domain} has no mail server (no MX or address)",
        )
    return None
