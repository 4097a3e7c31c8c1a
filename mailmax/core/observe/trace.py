"""Live traces over the admin channel: ``trace <json filter>`` keeps the connection open and
sends one JSON line per event the filter takes, until the client goes away.

A trace never holds more than the transport's send buffer: while the client does not read,
events are dropped and counted, and a notice says how many when it reads again. At most
:data:`MAX_TRACES` traces run at once.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from mailmax.core.observe.events import CATEGORIES, SERVICES, Event, EventBus, EventFilter

#: Most traces running at once.
MAX_TRACES = 16
#: The categories a trace shows when none are asked for (message contents only on request).
DEFAULT_CATEGORIES = tuple(c for c in CATEGORIES if c not in ("data", "conversation"))


class TraceRequestError(ValueError):
    """A trace request that cannot be served (the message says why)."""


def parse_filter(text: str, domains: frozenset[str] = frozenset()) -> EventFilter:
    """The filter of a trace request (JSON: ``services``, ``categories``, ``ip``, ``user``);
    ``domains`` limits it to events of those domains (empty: every event)."""
    try:
        request = json.loads(text) if text.strip() else {}
    except ValueError:
        raise TraceRequestError(f"a trace request is a JSON object, not {text!r}") from None
    if not isinstance(request, dict):
        raise TraceRequestError("a trace request is a JSON object")
    unknown = set(request) - {"services", "categories", "ip", "user"}
    if unknown:
        raise TraceRequestError(f"unknown trace option(s): {', '.join(sorted(unknown))}")
    services = _names(request.get("services", []), SERVICES, "service")
    categories = _names(request.get("categories", []), CATEGORIES, "category")
    return EventFilter(
        services=frozenset(services),
        categories=frozenset(categories or DEFAULT_CATEGORIES),
        ip=str(request.get("ip", "") or ""),
        user=str(request.get("user", "") or ""),
        domains=domains,
    )


def _names(values: Any, known: tuple[str, ...], what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TraceRequestError(f"{what} names must be a list of strings")
    for value in values:
        if value not in known:
            raise TraceRequestError(f"unknown {what} {value!r}; use one of {', '.join(known)}")
    return values


@implementer(IPushProducer)
class Trace:
    """One running trace: writes the events of ``event_filter`` to ``transport`` as JSON lines
    (``write`` is the transport's write, or what frames them, such as server-sent events)."""

    def __init__(self, bus: EventBus, event_filter: EventFilter, transport: Any, write: Any = None):
        self.bus = bus
        self.transport = transport
        self._write = write or (lambda line: transport.write(line.encode() + b"\n"))
        self.paused = False
        self.dropped = 0
        self.transport.registerProducer(self, True)
        self._handle: int | None = bus.subscribe(event_filter, self.send)

    def send(self, event: Event) -> None:
        """Send ``event``, or count it dropped while the client does not read."""
        if self.paused:
            self.dropped += 1
            return
        self._write(json.dumps(event.as_dict(), ensure_ascii=False))

    def pauseProducing(self) -> None:
        """The client does not read: drop events from now on."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The client reads again: say how many events it missed."""
        self.paused = False
        if self.dropped:
            notice = {"notice": f"{self.dropped} event(s) dropped: the trace was not read"}
            self._write(json.dumps(notice))
            self.dropped = 0

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.stop()

    def stop(self) -> None:
        """Unsubscribe (once)."""
        if self._handle is not None:
            self.bus.unsubscribe(self._handle)
            self._handle = None

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return self._handle is not None
