"""A small in-memory registry of counters and gauges that plugins (and the host) update.

Names are ``<plugin>.<name>`` (lower-case letters, digits, ``.``, ``_``, ``-``). Counters only go
up; gauges hold the last value set. The registry lives as long as the server process (reloads
keep it) and is read with ``mailmax metrics`` (the admin channel's ``metrics`` command) or
:meth:`Metrics.snapshot`. At most :data:`MAX_NAMES` names are kept: beyond that, new names are
dropped and counted under ``mailmax.metrics.dropped``, with a warning in the log.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="mailmax.plugins")

#: Most distinct metric names held.
MAX_NAMES = 10_000
DROPPED = "mailmax.metrics.dropped"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


def check_name(name: str) -> str:
    """``name`` if it is a valid metric name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"metric name {name!r}: use 1 to 100 lower-case letters, digits, '.', '_' and '-'"
        )
    return name


class Metrics:
    """The process's counters and gauges (thread-safe: delivery threads may update them)."""

    def __init__(self, limit: int = MAX_NAMES) -> None:
        self.limit = limit
        self._counters: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._lock = threading.Lock()
        self._warned = False

    def _room_for(self, name: str) -> bool:
        if name in self._counters or name in self._gauges:
            return True
        if len(self._counters) + len(self._gauges) < self.limit:
            return True
        self._counters[DROPPED] = self._counters.get(DROPPED, 0) + 1
        if not self._warned:
            self._warned = True
            log.warn(
                "metrics: {limit} names are held; new names such as {name} are dropped",
                limit=self.limit,
                name=name,
            )
        return False

    def increment(self, name: str, by: float = 1) -> None:
        """Add ``by`` (not negative) to the counter ``name``."""
        check_name(name)
        if isinstance(by, bool) or not isinstance(by, int | float) or by < 0:
            raise ValueError(f"counter {name}: increment by a number >= 0, not {by!r}")
        with self._lock:
            if name in self._gauges:
                raise ValueError(f"metric {name} is a gauge, not a counter")
            if self._room_for(name):
                self._counters[name] = self._counters.get(name, 0) + by

    def set_gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name`` to ``value``."""
        check_name(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"gauge {name}: the value must be a number, not {value!r}")
        with self._lock:
            if name in self._counters:
                raise ValueError(f"metric {name} is a counter, not a gauge")
            if self._room_for(name):
                self._gauges[name] = value

    def value(self, name: str) -> float | None:
        """The current value of counter or gauge ``name`` (None when never set)."""
        with self._lock:
            return self._counters.get(name, self._gauges.get(name))

    def snapshot(self, prefix: str = "") -> dict[str, dict[str, float]]:
        """``{"counters": {...}, "gauges": {...}}``, names sorted, those under ``prefix``."""
        with self._lock:
            counters, gauges = sorted(self._counters.items()), sorted(self._gauges.items())
        return {
            "counters": {k: v for k, v in counters if k.startswith(prefix)},
            "gauges": {k: v for k, v in gauges if k.startswith(prefix)},
        }


class PluginMetrics:
    """One plugin's view of :class:`Metrics`: names are prefixed with ``<plugin>.``."""

    def __init__(self, metrics: Metrics, plugin: str) -> None:
        self._metrics = metrics
        self.prefix = plugin.lower() + "."

    def increment(self, name: str, by: float = 1) -> None:
        """Add ``by`` to this plugin's counter ``name``."""
        self._metrics.increment(self.prefix + name, by)

    def set_gauge(self, name: str, value: float) -> None:
        """Set this plugin's gauge ``name``."""
        self._metrics.set_gauge(self.prefix + name, value)

    def value(self, name: str) -> float | None:
        """The current value of this plugin's metric ``name``."""
        return self._metrics.value(self.prefix + name)

    def snapshot(self) -> dict[str, Any]:
        """This plugin's counters and gauges (full names)."""
        return self._metrics.snapshot(self.prefix)
