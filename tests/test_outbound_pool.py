"""Outbound session limits and connection reuse (Q2), with a clock and stand-in connections."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from mailmax.core.outbound.pool import Lease, SessionPool


class Connection:
    """Stands in for an SMTP client connection: open until closed."""

    def __init__(self) -> None:
        self.open = True

    def idle_ok(self) -> bool:
        return self.open

    async def quit(self) -> None:
        self.open = False


def pool(clock: Clock, **limits: Any) -> SessionPool:
    values = {
        "max_sessions": 3,
        "max_retry_sessions": 1,
        "max_per_destination": 2,
        "reuse_seconds": 2.0,
        **limits,
    }
    return SessionPool(reactor=clock, **values)


def granted(d: defer.Deferred[Lease]) -> Lease | None:
    box: list[Lease] = []

    def keep(lease: Lease) -> Lease:
        box.append(lease)
        return lease

    d.addCallback(keep)
    return box[0] if box else None


def test_limits_total_per_destination_and_retries() -> None:
    """Q2: no more than max_sessions at once, max_per_destination per destination, and
    max_retry_sessions for retries; a released slot goes to the first caller that fits."""
    clock = Clock()
    sessions = pool(clock)
    a1 = granted(sessions.lease("a", False))
    a2 = granted(sessions.lease("a", False))
    a3 = sessions.lease("a", False)  # per-destination limit
    assert a1 and a2 and granted(a3) is None
    r1 = granted(sessions.lease("b", True))
    r2 = sessions.lease("c", True)  # retry limit
    assert r1 and granted(r2) is None
    c1 = sessions.lease("c", False)  # total limit (a1, a2, r1)
    assert granted(c1) is None and sessions.active == 3
    sessions.release(a1)
    assert granted(a3) is not None and granted(c1) is None  # the slot went to a3 (FIFO)
    sessions.release(r1)
    assert granted(r2) is not None and sessions.retrying == 1
    assert sessions.active == 3


def test_connection_goes_to_the_next_caller_for_the_same_endpoint() -> None:
    """Q2: a finished connection is handed to a waiting caller that would connect there."""
    clock = Clock()
    sessions = pool(clock, max_per_destination=1)
    first = granted(sessions.lease("a", False, ["mx:25"]))
    assert first is not None
    first.endpoint = "mx:25"
    waiting = sessions.lease("a", False, ["mx:25"])
    connection = Connection()
    sessions.release(first, connection)
    second = granted(waiting)
    assert second is not None and second.client is connection and connection.open
    assert sessions.active == 1


def test_idle_connection_is_reused_then_closed_after_reuse_seconds() -> None:
    """Q2: with nobody waiting, a connection stays idle for reuse_seconds, then closes."""
    clock = Clock()
    sessions = pool(clock)
    lease = granted(sessions.lease("a", False, ["mx:25"]))
    assert lease is not None
    lease.endpoint = "mx:25"
    connection = Connection()
    sessions.release(lease, connection)
    assert sessions.idle_count == 1 and sessions.active == 1
    again = granted(sessions.lease("a", False, ["other:25", "mx:25"]))
    assert again is not None and again.client is connection and again.endpoint == "mx:25"
    sessions.release(again, connection)
    clock.advance(2.0)
    assert not connection.open and sessions.idle_count == 0 and sessions.active == 0


def test_idle_connections_give_way_to_other_destinations() -> None:
    """Q2: when the total limit is reached by idle connections, one is closed for a caller
    to another destination instead of making it wait."""
    clock = Clock()
    sessions = pool(clock, max_sessions=1)
    lease = granted(sessions.lease("a", False, ["mx-a:25"]))
    assert lease is not None
    lease.endpoint = "mx-a:25"
    connection = Connection()
    sessions.release(lease, connection)
    other = granted(sessions.lease("b", False, ["mx-b:25"]))
    assert other is not None and other.client is None
    assert not connection.open and sessions.active == 1


def test_dead_idle_connection_is_not_handed_out() -> None:
    """Q2: an idle connection the server closed meanwhile is dropped, not reused."""
    clock = Clock()
    sessions = pool(clock)
    lease = granted(sessions.lease("a", False, ["mx:25"]))
    assert lease is not None
    lease.endpoint = "mx:25"
    connection = Connection()
    sessions.release(lease, connection)
    connection.open = False
    fresh = granted(sessions.lease("a", False, ["mx:25"]))
    assert fresh is not None and fresh.client is None and sessions.active == 1
    sessions.close()


def test_domains_on_the_same_mail_host_share_connections() -> None:
    """Q2: a connection to an MX host is reused for another domain served by the same host,
    its slot then counting for that domain (within that domain's limit)."""
    clock = Clock()
    sessions = pool(clock, max_per_destination=1)
    lease = granted(sessions.lease("one.test", False, ["mx:25"]))
    assert lease is not None
    lease.endpoint = "mx:25"
    busy = granted(sessions.lease("two.test", False, ["mx:25"]))
    assert busy is not None
    waiting = sessions.lease("two.test", False, ["mx:25"])  # two.test is at its limit
    connection = Connection()
    sessions.release(lease, connection)
    assert granted(waiting) is None and not connection.open  # not for two.test: closed
    busy.endpoint = "mx:25"
    sessions.release(busy, Connection())
    adopted = granted(waiting)
    assert adopted is not None and adopted.client is not None
    assert dict(sessions.per_destination) == {"two.test": 1} and sessions.active == 1
    sessions.release(adopted, adopted.client)
    other = granted(sessions.lease("three.test", False, ["mx:25"]))
    assert other is not None and other.client is not None
    assert dict(sessions.per_destination) == {"three.test": 1}
