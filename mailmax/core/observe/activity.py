"""Activity counters: connections, failed log-ins, messages and bytes per service, over the
last hour, 12 hours, 24 hours and week.

Each count goes into a five-minute bucket (one dict update on the hot path, no row per
event); a window is the sum of its buckets. Buckets older than a week are dropped. The
counters are saved to ``<data>/activity.json`` now and then and at shutdown, and read back at
start, so they survive restarts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="mailmax.observe")

#: Seconds covered by one bucket.
BUCKET_SECONDS = 300
#: Window name -> seconds.
WINDOWS = {"hour": 3600, "12h": 12 * 3600, "24h": 24 * 3600, "week": 7 * 24 * 3600}
#: What is counted, per service.
KINDS = ("connections", "failed_logins", "messages", "bytes")
FILE_NAME = "activity.json"
#: Most domains counted (messages and bytes for their users); beyond that, none is added.
MAX_DOMAINS = 10_000
#: Per-domain counters are kept under "@<domain>" beside the services.
DOMAIN_MARK = "@"


class Activity:
    """Bucketed counters per (service, kind); totals since the process started as well."""

    def __init__(self, clock: Callable[[], float] = time.time, enabled: bool = True) -> None:
        self.clock = clock
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], dict[int, int]] = {}
        #: Counts since the process started (what Prometheus reads: they only go up).
        self.totals: dict[tuple[str, str], int] = {}
        self._domain_names: set[str] = set()

    def add(self, service: str, kind: str, amount: int = 1) -> None:
        """Count ``amount`` of ``kind`` (one of :data:`KINDS`) for ``service`` now."""
        if not self.enabled:
            return
        key = (service, kind)
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = {}
        bucket = int(self.clock()) // BUCKET_SECONDS
        buckets[bucket] = buckets.get(bucket, 0) + amount
        if not service.startswith(DOMAIN_MARK):  # Prometheus: no label per domain
            self.totals[key] = self.totals.get(key, 0) + amount

    def add_domain(self, domain: str, kind: str, amount: int = 1) -> None:
        """Count ``amount`` of ``kind`` for the local domain ``domain`` (messages and bytes
        received for its users); at most :data:`MAX_DOMAINS` domains are counted."""
        name = DOMAIN_MARK + domain.lower()
        if name not in self._domain_names:
            if len(self._domain_names) >= MAX_DOMAINS:
                return
            self._domain_names.add(name)
        self.add(name, kind, amount)

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{service: {kind: {window: count}}}`` for every service that saw activity."""
        return self._summary(lambda name: not name.startswith(DOMAIN_MARK))

    def domain_summary(self, domains: frozenset[str]) -> dict[str, dict[str, dict[str, int]]]:
        """``{domain: {kind: {window: count}}}`` for each of ``domains`` (zeros included)."""
        wanted = {DOMAIN_MARK + domain.lower() for domain in domains}
        found = self._summary(lambda name: name in wanted)
        empty = {kind: dict.fromkeys(WINDOWS, 0) for kind in KINDS}
        return {
            domain.lower(): found.get(DOMAIN_MARK + domain.lower(), empty)
            for domain in sorted(domains)
        }

    def _summary(self, keep: Callable[[str], bool]) -> dict[str, dict[str, dict[str, int]]]:
        now = int(self.clock()) // BUCKET_SECONDS
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (service, kind), buckets in sorted(self._buckets.items()):
            if not keep(service):
                continue
            counts = {}
            for window, seconds in WINDOWS.items():
                first = now - seconds // BUCKET_SECONDS + 1
                counts[window] = sum(v for b, v in buckets.items() if b >= first)
            per_service = out.setdefault(service, {k: dict.fromkeys(WINDOWS, 0) for k in KINDS})
            per_service[kind] = counts
        return out

    def prune(self) -> None:
        """Drop the buckets older than the longest window."""
        oldest = int(self.clock()) // BUCKET_SECONDS - WINDOWS["week"] // BUCKET_SECONDS
        for key, buckets in list(self._buckets.items()):
            for bucket in [b for b in buckets if b <= oldest]:
                del buckets[bucket]
            if not buckets:
                del self._buckets[key]
        self._domain_names = {name for name, _ in self._buckets if name.startswith(DOMAIN_MARK)}

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write the buckets of the last week to ``path`` (atomically)."""
        self.prune()
        data = {
            "bucket_seconds": BUCKET_SECONDS,
            "counters": {
                f"{service}/{kind}": {str(b): v for b, v in buckets.items()}
                for (service, kind), buckets in self._buckets.items()
            },
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        """Add the buckets saved in ``path`` (a missing file is no activity; a damaged one is
        logged and set aside as ``activity.json.bad``)."""
        try:
            data = json.loads(path.read_text())
            if data.get("bucket_seconds") != BUCKET_SECONDS:
                raise ValueError(f"bucket_seconds is {data.get('bucket_seconds')!r}")
            loaded = _parse(data["counters"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warn("activity counters in {path} not read ({e}); starting from zero",
                     path=str(path), e=str(exc))  # fmt: skip
            os.replace(path, path.with_name(path.name + ".bad"))
            return
        for key, buckets in loaded.items():
            mine = self._buckets.setdefault(key, {})
            for bucket, value in buckets.items():
                mine[bucket] = mine.get(bucket, 0) + value
        self.prune()


def _parse(counters: Any) -> dict[tuple[str, str], dict[int, int]]:
    out: dict[tuple[str, str], dict[int, int]] = {}
    for name, buckets in counters.items():
        service, _, kind = name.partition("/")
        if kind not in KINDS:
            raise ValueError(f"unknown counter {name!r}")
        out[(service, kind)] = {int(b): int(v) for b, v in buckets.items()}
    return out
