"""MX and address look-ups for outbound delivery, with twisted.names.

The system resolver (``/etc/resolv.conf``) is used unless ``[queue] dns_servers`` names other
servers; ``/etc/hosts`` answers address look-ups first, as everywhere on the system. Every
look-up is bounded by ``[queue] dns_timeout``. Answers are cached for their TTL (at most five
minutes; "no such records" for a minute), and concurrent look-ups of the same name share one
query, so a busy queue does not ask again for every message.

Errors are split the way delivery needs them: :class:`DNSPermanentError` (the domain does not
exist or accepts no mail: the recipients bounce) and :class:`DNSTemporaryError` (no answer now:
try later). Both carry an SMTP-style diagnostic for the queue and the DSN.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.names import client, dns, error, hosts, resolve

from mailmax.core.observe.events import EventBus

#: Longest time an answer is reused, whatever its TTL.
MAX_CACHE_SECONDS = 300.0
#: How long "no records of this type" is remembered.
NEGATIVE_CACHE_SECONDS = 60.0
#: Cached answers kept at most (oldest dropped first).
MAX_CACHE_ENTRIES = 10000


class DNSError(Exception):
    """A look-up that did not give a usable answer; ``diagnostic`` is an SMTP-style reply."""

    def __init__(self, diagnostic: str) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic


class DNSPermanentError(DNSError):
    """The domain does not exist or accepts no mail: delivery to it must bounce."""


class DNSTemporaryError(DNSError):
    """The DNS did not answer now (timeout, server failure): try again later."""


@dataclass(frozen=True, slots=True)
class MXHost:
    """One mail exchanger of a domain: its host name and preference (lower is preferred).

    ``implicit`` marks the domain itself used as its own mail host because it has no MX
    records (RFC 5321 5.1).
    """

    name: str
    preference: int
    implicit: bool = False


@functools.lru_cache(maxsize=4096)
def ip_literal(host: str) -> str | None:
    """The IP address ``host`` names (``192.0.2.1``, ``[192.0.2.1]``, ``[IPv6:2001:db8::1]``),
    or ``None`` when it is a host name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _timeouts(total: float) -> tuple[float, ...]:
    """Per-try timeouts for twisted.names adding up to ``total`` seconds."""
    return (total * 0.2, total * 0.8) if total >= 2 else (total,)


class Resolver:
    """Looks up the mail hosts and addresses of destinations."""

    def __init__(
        self,
        *,
        reactor: Any,
        servers: Sequence[tuple[str, int]] = (),
        timeout: float = 30.0,
        ip_versions: str = "both",
        hosts_file: str = "/etc/hosts",
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.ip_versions = ip_versions
        if servers:
            dns_client = client.Resolver(servers=list(servers), reactor=reactor)
        else:
            dns_client = client.Resolver(resolv=resolv_conf, reactor=reactor)
        self._dns = dns_client
        self._addresses = resolve.ResolverChain([hosts.Resolver(hosts_file.encode()), dns_client])
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._pending: dict[tuple[str, str], list[defer.Deferred[Any]]] = {}
        #: Where look-ups are published (category ``dns`` of service ``queue``).
        self.events = EventBus()

    # ------------------------------------------------------------------ public
    async def mx(self, domain: str) -> list[MXHost]:
        """The mail hosts of ``domain``, most preferred first (equal ones in random order).

        Without MX records the domain itself is its mail host if it has an address. Raises
        :class:`DNSPermanentError` for a domain that does not exist, has a null MX (RFC 7505)
        or no address, and :class:`DNSTemporaryError` when the DNS does not answer.
        """
        domain = domain.rstrip(".").lower()
        try:
            answers = await self._cached("MX", domain, self._lookup_mx)
        except error.DNSNameError:
            raise DNSPermanentError(
                f"550 5.1.2 Domain {domain} does not exist (DNS: no such domain)"
            ) from None
        except Exception as exc:  # timeouts, server failures, refused or lost queries
            raise DNSTemporaryError(
                f"451 4.4.3 DNS look-up of the MX of {domain} failed: {_describe(exc)}"
            ) from None
        if not answers:
            if not await self.addresses(domain):
                raise DNSPermanentError(
                    f"550 5.1.2 Domain {domain} has no mail server (no MX or address records)"
                )
            return [MXHost(domain, 0, implicit=True)]
        if any(name in ("", ".") for _, name in answers):
            raise DNSPermanentError(f"556 5.1.10 Domain {domain} accepts no mail (null MX)")
        shuffled = list(answers)
        random.shuffle(shuffled)
        shuffled.sort(key=lambda item: item[0])
        return [MXHost(name, preference) for preference, name in shuffled]

    async def addresses(self, host: str) -> list[str]:
        """The IP addresses of ``host`` (IPv4 first, then IPv6, as ``ip_versions`` allows).

        An IP literal is its own address. A name without addresses gives ``[]``; raises
        :class:`DNSTemporaryError` when no family could be looked up.
        """
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        host = host.rstrip(".").lower()
        kinds = {"both": ("A", "AAAA"), "ipv4": ("A",), "ipv6": ("AAAA",)}[self.ip_versions]
        found: list[str] = []
        failures: list[BaseException] = []
        known = [self._fresh(kind, host) for kind in kinds]
        if all(hit is not None for hit in known):  # the usual case: no waiting at all
            return [address for hit in known for address in hit or ()]
        lookups = [
            defer.succeed(hit)
            if hit is not None
            else defer.ensureDeferred(self._cached(kind, host, self._lookup_address))
            for kind, hit in zip(kinds, known, strict=True)
        ]
        results = await defer.DeferredList(lookups, consumeErrors=True)
        for ok, value in results:
            if ok:
                found.extend(value)
            elif not value.check(error.DNSNameError):
                failures.append(value.value)
        if not found and failures and len(failures) == len(kinds):
            raise DNSTemporaryError(
                f"451 4.4.3 DNS look-up of the address of {host} failed: {_describe(failures[0])}"
            )
        return found

    # ------------------------------------------------------------------ look-ups
    async def _lookup_mx(self, domain: str) -> tuple[float, list[tuple[int, str]]]:
        answers, _, _ = await self._query(self._dns.lookupMailExchange, domain)
        records = [rr for rr in answers if rr.type == dns.MX]
        out = [(rr.payload.preference, str(rr.payload.name).rstrip(".").lower()) for rr in records]
        return _ttl(records), out

    async def _lookup_address(self, kind: str, host: str) -> tuple[float, list[str]]:
        if kind == "A":
            answers, _, _ = await self._query(self._addresses.lookupAddress, host)
            records = [rr for rr in answers if rr.type == dns.A]
            return _ttl(records), [rr.payload.dottedQuad() for rr in records]
        answers, _, _ = await self._query(self._addresses.lookupIPV6Address, host)
        records = [rr for rr in answers if rr.type == dns.AAAA]
        return _ttl(records), [
            socket.inet_ntop(socket.AF_INET6, rr.payload.address) for rr in records
        ]

    async def _query(self, method: Callable[..., defer.Deferred[Any]], name: str) -> Any:
        d = method(name, timeout=_timeouts(self.timeout))
        d.addTimeout(self.timeout + 1, self.reactor)
        return await d

    async def _cached(
        self, kind: str, name: str, lookup: Callable[..., Awaitable[tuple[float, Any]]]
    ) -> Any:
        """The answer for (``kind``, ``name``): from the cache, from a look-up already under
        way (every caller waits for the one query), or from a new look-up."""
        key = (kind, name)
        hit = self._fresh(kind, name)
        if hit is not None:
            return hit
        waiting = self._pending.get(key)
        if waiting is not None:
            d: defer.Deferred[Any] = defer.Deferred()
            waiting.append(d)
            return await d
        self._pending[key] = waiting = []
        try:
            ttl, value = await (lookup(name) if kind == "MX" else lookup(kind, name))
        except BaseException as exc:
            del self._pending[key]
            self._publish(kind, name, f"failed: {_describe(exc)}")
            for d in waiting:
                d.errback(exc)
            raise
        del self._pending[key]
        self._publish(kind, name, _answer(value))
        ttl = ttl if value else NEGATIVE_CACHE_SECONDS
        if ttl > 0:
            if len(self._cache) >= MAX_CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (time.monotonic() + min(ttl, MAX_CACHE_SECONDS), value)
        for d in waiting:
            d.callback(value)
        return value

    def _fresh(self, kind: str, name: str) -> Any:
        """The cached answer for (``kind``, ``name``) while it is fresh, else None."""
        hit = self._cache.get((kind, name))
        if hit is None or hit[0] <= time.monotonic():
            return None
        if self.events.wants("queue", "dns"):
            self._publish(kind, name, f"{_answer(hit[1])} (cached)")
        return hit[1]

    def _publish(self, kind: str, name: str, outcome: str) -> None:
        if self.events.wants("queue", "dns"):
            domain = name.lower()
            self.events.emit("queue", "dns", f"{kind} {name}: {outcome}", domains=(domain,))


def _answer(value: Any) -> str:
    """A look-up's answer in a few words."""
    if not value:
        return "no records"
    return ", ".join(f"{v[0]} {v[1]}" if isinstance(v, tuple) else str(v) for v in value[:10])


def _ttl(records: Sequence[Any]) -> float:
    return float(min((rr.ttl for rr in records), default=0))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, error.DNSQueryTimeoutError | defer.TimeoutError):
        return "timed out"
    if isinstance(exc, error.DNSServerError):
        return "server failure"
    if isinstance(exc, error.DNSQueryRefusedError):
        return "query refused"
    return type(exc).__name__
