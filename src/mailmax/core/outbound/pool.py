"""Outbound session limits and connection reuse (Q2).

A :class:`Lease` is the right to hold one SMTP session to one destination (a domain, or a
smart host). :class:`SessionPool` hands out leases within three limits: all sessions
(``max_sessions``), sessions busy with retries (``max_retry_sessions``) and sessions per
destination (``max_per_destination``). A caller that finished a transaction gives its
connection back: it goes straight to the next caller waiting for the same destination, or
waits idle for ``reuse_seconds``, still counted against the limits, and is closed as soon as
its slot is needed elsewhere.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from mailmax.core.outbound.client import SMTPClient


@dataclass(eq=False)
class Lease:
    """One session slot for ``destination``; ``client`` is a connection handed over for reuse."""

    destination: Hashable
    retry: bool
    client: SMTPClient | None = None
    released: bool = False


@dataclass(eq=False)
class _Idle:
    lease: Lease
    client: SMTPClient
    timer: Any = field(default=None)


class SessionPool:
    """Hands out session leases within the configured limits; keeps idle connections."""

    def __init__(
        self,
        *,
        reactor: Any,
        max_sessions: int,
        max_retry_sessions: int,
        max_per_destination: int,
        reuse_seconds: float,
    ) -> None:
        self.reactor = reactor
        self.max_sessions = max_sessions
        self.max_retry_sessions = max_retry_sessions
        self.max_per_destination = max_per_destination
        self.reuse_seconds = reuse_seconds
        self.active = 0
        self.retrying = 0
        self.per_destination: Counter[Hashable] = Counter()
        self._waiting: deque[tuple[Lease, defer.Deferred[Lease]]] = deque()
        self._idle: dict[Hashable, list[_Idle]] = {}
        self._closed = False

    # ------------------------------------------------------------------ leases
    def lease(self, destination: Hashable, retry: bool) -> defer.Deferred[Lease]:
        """A lease for ``destination``: at once when the limits allow, else when they do."""
        lease = Lease(destination, retry)
        idle = self._take_idle(destination, retry)
        if idle is not None:
            return defer.succeed(idle)
        if self._fits(lease) or self._evict_for(lease):
            self._count(lease, +1)
            return defer.succeed(lease)
        d: defer.Deferred[Lease] = defer.Deferred()
        self._waiting.append((lease, d))
        return d

    def release(self, lease: Lease, client: SMTPClient | None = None) -> None:
        """Give the lease back, with a connection that may be reused (or ``None``)."""
        if lease.released:
            return
        lease.client = None
        if client is not None and self._reusable(client) and not self._closed:
            for index, (waiter, d) in enumerate(self._waiting):
                if waiter.destination == lease.destination and self._switch(lease, waiter.retry):
                    del self._waiting[index]
                    lease.client = client
                    d.callback(lease)
                    return
            if self.reuse_seconds > 0 and not self._waiting:
                idle = _Idle(lease, client)
                idle.timer = self.reactor.callLater(self.reuse_seconds, self._expire, idle)
                self._idle.setdefault(lease.destination, []).append(idle)
                return
        if client is not None:
            _close(client)
        self._free(lease)

    def _switch(self, lease: Lease, retry: bool) -> bool:
        """Let ``lease`` count as a retry session or not; False when the limit forbids it."""
        if lease.retry == retry:
            return True
        if retry and self.retrying >= self.max_retry_sessions:
            return False
        self.retrying += 1 if retry else -1
        lease.retry = retry
        return True

    def _free(self, lease: Lease) -> None:
        lease.released = True
        self._count(lease, -1)
        self._wake()

    def _wake(self) -> None:
        index = 0
        while index < len(self._waiting):
            lease, d = self._waiting[index]
            idle = self._take_idle(lease.destination, lease.retry)
            if idle is not None:
                del self._waiting[index]
                d.callback(idle)
                continue
            if self._fits(lease) or self._evict_for(lease):
                del self._waiting[index]
                self._count(lease, +1)
                d.callback(lease)
                continue
            index += 1

    # ------------------------------------------------------------------ limits
    def _fits(self, lease: Lease) -> bool:
        return (
            self.active < self.max_sessions
            and self.per_destination[lease.destination] < self.max_per_destination
            and (not lease.retry or self.retrying < self.max_retry_sessions)
        )

    def _count(self, lease: Lease, step: int) -> None:
        self.active += step
        self.per_destination[lease.destination] += step
        if self.per_destination[lease.destination] <= 0:
            del self.per_destination[lease.destination]
        if lease.retry:
            self.retrying += step

    def _evict_for(self, lease: Lease) -> bool:
        """Close idle connections whose slots keep ``lease`` out; True when it then fits."""
        while not self._fits(lease):
            victim = self._victim(lease)
            if victim is None:
                return False
            self._drop_idle(victim)
        return True

    def _victim(self, lease: Lease) -> _Idle | None:
        if self.per_destination[lease.destination] >= self.max_per_destination:
            candidates = self._idle.get(lease.destination, [])
        else:
            candidates = [i for items in self._idle.values() for i in items]
            if lease.retry and self.retrying >= self.max_retry_sessions:
                candidates = [i for i in candidates if i.lease.retry]
        return candidates[0] if candidates else None

    # ------------------------------------------------------------------ idle connections
    def _take_idle(self, destination: Hashable, retry: bool) -> Lease | None:
        items = self._idle.get(destination)
        while items:
            idle = items.pop()
            if idle.timer is not None and idle.timer.active():
                idle.timer.cancel()
            if not items:
                del self._idle[destination]
            if self._reusable(idle.client) and self._switch(idle.lease, retry):
                idle.lease.client = idle.client
                return idle.lease
            _close(idle.client)
            self._count(idle.lease, -1)
            idle.lease.released = True
            items = self._idle.get(destination)
        return None

    def _drop_idle(self, idle: _Idle) -> None:
        items = self._idle.get(idle.lease.destination, [])
        if idle in items:
            items.remove(idle)
            if not items:
                del self._idle[idle.lease.destination]
        if idle.timer is not None and idle.timer.active():
            idle.timer.cancel()
        _close(idle.client)
        idle.lease.released = True
        self._count(idle.lease, -1)

    def _expire(self, idle: _Idle) -> None:
        idle.timer = None
        self._drop_idle(idle)
        self._wake()

    @staticmethod
    def _reusable(client: SMTPClient) -> bool:
        return client.idle_ok()

    @property
    def idle_count(self) -> int:
        """How many connections wait idle for reuse."""
        return sum(len(items) for items in self._idle.values())

    def close(self) -> None:
        """Close every idle connection and refuse to keep new ones."""
        self._closed = True
        for items in list(self._idle.values()):
            for idle in list(items):
                self._drop_idle(idle)


def _close(client: SMTPClient) -> None:
    defer.ensureDeferred(client.quit())
