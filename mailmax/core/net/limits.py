"""Per-IP connection limits: concurrent sessions and new connections per minute, per service.

One :class:`ConnectionLimiter` serves every listener of the process; counts are kept per
(service, IP), so an IP's IMAP sessions do not count against its SMTP ones. Whether a client is
exempt is the client's rights' answer (:mod:`mailmax.core.clientrights`: access rules, or
``[connections] exempt_networks``), given to :meth:`ConnectionLimiter.admit`. Time comes from the
reactor, so tests drive it with a :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailmax.core.config import ConnectionSettings

#: Seconds over which new connections are counted.
RATE_WINDOW = 60.0
#: Rate records kept before the stale ones are swept out.
SWEEP_AT = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkList:
    """A list of IP networks and the question whether an address is in one of them."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __contains__(self, ip: str) -> bool:
        if not self.networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


class ConnectionLimiter:
    """Admits or refuses new connections by their IP and service.

    ``max_sessions`` concurrent sessions and ``max_per_minute`` new connections in the last
    minute, per IP and service; 0 switches a limit off. A refused connection does not count.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        max_sessions: int,
        max_per_minute: int,
    ) -> None:
        self.reactor = reactor
        self.max_sessions = max_sessions
        self.max_per_minute = max_per_minute
        self._open: collections.Counter[tuple[str, str]] = collections.Counter()
        self._recent: dict[tuple[str, str], collections.deque[float]] = {}
        self._sweep_at = SWEEP_AT

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, reactor: Any) -> ConnectionLimiter:
        """A limiter with the ``[connections]`` settings."""
        return cls(
            reactor,
            max_sessions=settings.max_sessions_per_ip,
            max_per_minute=settings.max_new_per_ip_per_minute,
        )

    def reconfigure(self, settings: ConnectionSettings) -> None:
        """Take new ``[connections]`` limits (a reload); open sessions stay counted. A changed
        rate limit starts its count of recent connections afresh."""
        if settings.max_new_per_ip_per_minute != self.max_per_minute:
            self._recent.clear()
        self.max_sessions = settings.max_sessions_per_ip
        self.max_per_minute = settings.max_new_per_ip_per_minute

    def admit(self, service: str, ip: str, exempt: bool = False) -> str | None:
        """Count a new connection and return None, or say why it is refused (not counted).

        An ``exempt`` connection is admitted and counted as open, never limited."""
        if exempt:
            self._open[(service, ip)] += 1
            return None
        key = (service, ip)
        if self.max_sessions and self._open[key] >= self.max_sessions:
            return f"Too many connections from {ip}"
        if self.max_per_minute:
            now = self.reactor.seconds()
            recent = self._recent.get(key)
            if recent is None:
                if len(self._recent) >= self._sweep_at:
                    self._sweep(now)
                recent = self._recent[key] = collections.deque(maxlen=self.max_per_minute)
            if len(recent) == self.max_per_minute and now - recent[0] < RATE_WINDOW:
                return f"Too many new connections from {ip}, try again later"
            recent.append(now)
        self._open[key] += 1
        return None

    def release(self, service: str, ip: str) -> None:
        """An admitted connection has closed."""
        key = (service, ip)
        left = self._open[key] - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def open_sessions(self, service: str, ip: str) -> int:
        """Admitted sessions of ``ip`` on ``service`` still open."""
        return self._open[(service, ip)]

    def _sweep(self, now: float) -> None:
        stale = [key for key, times in self._recent.items() if now - times[-1] >= RATE_WINDOW]
        for key in stale:
            del self._recent[key]
        self._sweep_at = max(SWEEP_AT, 2 * len(self._recent))
