"""Outbound session limits and connection reuse.

A :class:`Lease` is the right to hold one SMTP session for one destination (a domain, or a
smart host). :class:`SessionPool` hands out leases within three limits: all sessions
(``max_sessions``), sessions busy with retries (``max_retry_sessions``) and sessions per
destination (``max_per_destination``).

Connections are reused by *endpoint* (address, port and the TLS/AUTH profile), so mail for
several domains served by the same MX host shares connections: a caller names the endpoints it
would connect to, in order. A finished connection goes straight to the first waiting caller
that would use its endpoint, or waits idle for ``reuse_seconds`` (still counted against the
limits, and closed as soon as its slot is needed elsewhere). A connection whose holder has
sent its message and only waits for the reply may be handed over at once to a caller waiting
for it (:meth:`SessionPool.hand_over`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from mailmax.core.outbound.client import SMTPClient


@dataclass(eq=False)
class Lease:
    """One session slot for ``destination``.

    ``endpoints`` are the endpoints the holder may connect to, in order; ``client`` is a
    connection handed over for reuse and ``endpoint`` the endpoint of the connection the holder
    uses (set it after connecting).
    """

    destination: Hashable
    retry: bool
    endpoints: tuple[Hashable, ...] = ()
    client: SMTPClient | None = None
    endpoint: Hashable = None
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
    def lease(
        self, destination: Hashable, retry: bool, endpoints: Sequence[Hashable] = ()
    ) -> defer.Deferred[Lease]:
        """A lease for ``destination``: at once when the limits allow, else when they do.

        The lease carries an idle connection to one of ``endpoints`` when there is one.
        """
        lease = Lease(destination, retry, tuple(endpoints))
        if self._adopt_idle(lease) or self._fits(lease) or self._evict_for(lease):
            if lease.client is None:
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
        if client is not None and client.idle_ok() and not self._closed:
            if self._give_to_waiter(lease, client):
                return
            if self.reuse_seconds > 0 and not self._waiting:
                idle = _Idle(lease, client)
                idle.timer = self.reactor.callLater(self.reuse_seconds, self._expire, idle)
                self._idle.setdefault(lease.endpoint, []).append(idle)
                return
        if client is not None:
            _close(client)
        self._free(lease)

    def hand_over(self, lease: Lease, client: SMTPClient) -> bool:
        """Give ``client`` (and the slot of ``lease``) to the first waiting caller that would
        use its endpoint while the holder still waits for its last reply, so that the next
        transaction follows that message at once (pipelining). False, changing nothing, when
        nobody waits for it; True when the holder no longer holds ``lease``."""
        if lease.released or self._closed or not client.pipelines():
            return False
        return self._give_to_waiter(lease, client)

    def _give_to_waiter(self, lease: Lease, client: SMTPClient) -> bool:
        """Let the first waiting caller that would use ``client``'s endpoint have it with the
        slot of ``lease``; False when there is none (or the limits do not allow the move)."""
        for index, (waiter, d) in enumerate(self._waiting):
            if lease.endpoint in waiter.endpoints and self._move(lease, waiter):
                del self._waiting[index]
                lease.client = client
                d.callback(lease)
                return True
        return False

    def _move(self, held: Lease, wanted: Lease) -> bool:
        """Let the slot of ``held`` serve ``wanted`` (its destination and retry flag) when the
        limits allow; ``held`` then stands for ``wanted``."""
        crowded = self.per_destination[wanted.destination] >= self.max_per_destination
        if held.destination != wanted.destination and crowded:
            return False
        if wanted.retry and not held.retry and self.retrying >= self.max_retry_sessions:
            return False
        self._count(held, -1)
        held.destination, held.retry, held.endpoints = (
            wanted.destination,
            wanted.retry,
            wanted.endpoints,
        )
        self._count(held, +1)
        return True

    def _free(self, lease: Lease) -> None:
        lease.released = True
        self._count(lease, -1)
        self._wake()

    def _wake(self) -> None:
        index = 0
        while index < len(self._waiting):
            lease, d = self._waiting[index]
            if self._adopt_idle(lease):
                del self._waiting[index]
                d.callback(lease)
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
        every = [i for items in self._idle.values() for i in items]
        if self.per_destination[lease.destination] >= self.max_per_destination:
            every = [i for i in every if i.lease.destination == lease.destination]
        elif lease.retry and self.retrying >= self.max_retry_sessions:
            every = [i for i in every if i.lease.retry]
        return every[0] if every else None

    # ------------------------------------------------------------------ idle connections
    def _adopt_idle(self, lease: Lease) -> bool:
        """Give ``lease`` an idle connection to one of its endpoints (and that connection's
        slot); False when there is none it may take."""
        for endpoint in lease.endpoints:
            items = self._idle.get(endpoint)
            while items:
                idle = items.pop()
                if not items:
                    del self._idle[endpoint]
                if idle.timer is not None and idle.timer.active():
                    idle.timer.cancel()
                if not idle.client.idle_ok():
                    _close(idle.client)
                    self._count(idle.lease, -1)
                    idle.lease.released = True
                elif self._move(idle.lease, lease):  # its slot now counts for ``lease``
                    lease.client, lease.endpoint = idle.client, endpoint
                    idle.lease.released = True
                    return True
                else:
                    self._idle.setdefault(endpoint, []).append(idle)
                    idle.timer = self.reactor.callLater(self.reuse_seconds, self._expire, idle)
                    break
                items = self._idle.get(endpoint)
        return False

    def _drop_idle(self, idle: _Idle) -> None:
        items = self._idle.get(idle.lease.endpoint, [])
        if idle in items:
            items.remove(idle)
            if not items:
                del self._idle[idle.lease.endpoint]
        if idle.timer is not None and idle.timer.active():
            idle.timer.cancel()
        _close(idle.client)
        idle.lease.released = True
        self._count(idle.lease, -1)

    def _expire(self, idle: _Idle) -> None:
        idle.timer = None
        self._drop_idle(idle)
        self._wake()

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


class Holding:
    """One delivery's hold on a session slot across the connections it tries.

    :meth:`sent` hands the connection (and the slot) to the next waiting delivery as soon as
    this one's message is sent (the reply comes later on the same connection); should that
    reply never come, :meth:`regain` takes a slot again before another connection is tried.
    """

    def __init__(self, pool: SessionPool, lease: Lease) -> None:
        self.pool = pool
        self.lease = lease
        #: True while the slot is handed over: the holder owns neither lease nor connection.
        self.handed = False

    def sent(self, client: SMTPClient) -> None:
        """The message is sent on ``client``: hand it over if someone waits for it."""
        if not self.handed:
            self.handed = self.pool.hand_over(self.lease, client)

    async def regain(self) -> None:
        """After the handed-over connection failed: hold a slot of one's own again."""
        if not self.handed:
            return
        lease = self.lease
        self.lease = await self.pool.lease(lease.destination, lease.retry, lease.endpoints)
        self.handed = False
        if self.lease.client is not None:  # a connection is reused at most once per attempt
            _close(self.lease.client)
            self.lease.client = None

    def release(self, client: SMTPClient | None) -> None:
        """Give the slot back with ``client`` (unless it is handed over already)."""
        if not self.handed:
            self.pool.release(self.lease, client)


def _close(client: SMTPClient) -> None:
    defer.ensureDeferred(client.quit())
