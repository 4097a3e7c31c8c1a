"""The in-process event bus: protocol sessions, the queue and the plugin host publish events;
the event log files and live traces subscribe to the categories they want.

Publishing costs one set look-up when nobody listens to a (service, category) pair:
call :meth:`EventBus.wants` first and build the :class:`Event` only when it says yes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

from twisted.logger import Logger

log = Logger(namespace="mailmax.observe")

#: An event category; the documentation lists them in this order.
Category = Literal[
    "connections",
    "commands",
    "conversation",
    "errors",
    "logins",
    "data",
    "dns",
    "policy",
    "deliveries",
]
#: A service events come from: the listeners' services, the queue and the admin side.
EventService = Literal[
    "smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "queue", "admin"
]
#: Every event category, in the order the documentation lists them.
CATEGORIES: tuple[str, ...] = get_args(Category)
#: The services events come from.
SERVICES: tuple[str, ...] = get_args(EventService)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened: when, in which service and category, in which session."""

    time: float
    service: str
    category: str
    text: str
    session: str = ""
    ip: str = ""
    user: str = ""
    #: The domains the event concerns (of the user, sender or recipients), for filtering.
    domains: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready mapping."""
        return {
            "time": self.time,
            "service": self.service,
            "category": self.category,
            "text": self.text,
            "session": self.session,
            "ip": self.ip,
            "user": self.user,
            "domains": list(self.domains),
        }


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber takes: every field left empty matches everything."""

    services: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    ip: str = ""
    user: str = ""
    domains: frozenset[str] = frozenset()

    def pairs(self) -> Iterable[tuple[str, str]]:
        """The (service, category) pairs this filter can take."""
        services = self.services or SERVICES
        categories = self.categories or CATEGORIES
        return ((s, c) for s in services for c in categories)

    def matches(self, event: Event) -> bool:
        """True when ``event`` passes the address, user and domain parts of the filter."""
        if self.ip and event.ip != self.ip:
            return False
        if self.user and event.user.lower() != self.user.lower():
            return False
        return not self.domains or bool(self.domains.intersection(event.domains))


Subscriber = Callable[[Event], None]
Pair = tuple[str, str]


class EventBus:
    """Subscribers with filters; :meth:`publish` hands an event to those whose filter takes it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._subscribers: dict[int, tuple[EventFilter, frozenset[Pair], Subscriber]] = {}
        self._wanted: frozenset[tuple[str, str]] = frozenset()
        self._next = 0
        #: True while anybody listens (a cheap first test for the hottest paths).
        self.active = False

    def subscribe(self, event_filter: EventFilter, subscriber: Subscriber) -> int:
        """Call ``subscriber(event)`` for every event ``event_filter`` takes; returns a handle
        for :meth:`unsubscribe`."""
        self._next += 1
        self._subscribers[self._next] = (event_filter, frozenset(event_filter.pairs()), subscriber)
        self._recompute()
        return self._next

    def unsubscribe(self, handle: int) -> None:
        """Stop calling the subscriber ``handle`` (unknown handles are ignored)."""
        if self._subscribers.pop(handle, None) is not None:
            self._recompute()

    def _recompute(self) -> None:
        self._wanted = frozenset(
            pair for _, pairs, _ in self._subscribers.values() for pair in pairs
        )
        self.active = bool(self._wanted)

    def wants(self, service: str, category: str) -> bool:
        """True when some subscriber takes events of ``category`` from ``service``."""
        return (service, category) in self._wanted

    def emit(self, service: str, category: str, text: str, **fields: Any) -> None:
        """Publish an event now (built only when somebody wants it)."""
        if (service, category) in self._wanted:
            self.publish(Event(self.clock(), service, category, text, **fields))

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber whose filter takes it; a failing subscriber is
        logged and the others still get it."""
        pair = (event.service, event.category)
        for event_filter, pairs, subscriber in list(self._subscribers.values()):
            if pair not in pairs or not event_filter.matches(event):
                continue
            try:
                subscriber(event)
            except Exception:
                log.failure("event subscriber failed")
