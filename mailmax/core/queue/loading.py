"""Reading a queued message as its processing starts: the envelope, the Received count and,
for remote delivery of a small message, its content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer

from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool

__all__ = [
    "BATCH_SIZE",
    "HEADER_READ_LIMIT",
    "WAITING",
    "BatchLoader",
    "Loaded",
    "count_received",
    "load",
    "received_in",
]

#: Bytes of the message read to count Received headers.
HEADER_READ_LIMIT = 256 * 1024
#: Most messages read in one thread job.
BATCH_SIZE = 64
#: A queue entry that may be attempted (or retried) again.
WAITING = ("pending", "deferred")


def count_received(path: Path) -> int:
    """How many ``Received:`` header fields the message at ``path`` has (blocking)."""
    with open(path, "rb") as handle:
        return received_in(handle.read(HEADER_READ_LIMIT))


def received_in(head: bytes) -> int:
    """How many ``Received:`` header fields the header section at the start of ``head`` has."""
    count = 0
    for line in head.split(b"\n"):
        if line in (b"", b"\r"):
            break
        if line[:9].lower() == b"received:":
            count += 1
    return count


@dataclass
class Loaded:
    """A queued message as processing starts: its envelope, its Received count, and (for
    remote delivery of a message up to :data:`HEADER_READ_LIMIT` bytes) its content."""

    envelope: SpoolEnvelope
    hops: int
    content: bytes | None = None


def load(spool: Spool, queue_id: str) -> Loaded:
    """Blocking: read a queued message's envelope and the head (or all) of its message."""
    envelope = spool.load(queue_id)
    remote = any(r.kind == "relay" and r.state in WAITING for r in envelope.recipients)
    with open(spool.message_path(queue_id), "rb") as handle:
        handle.seek(envelope.trace_bytes)
        head = handle.read(HEADER_READ_LIMIT + 1 if remote else HEADER_READ_LIMIT)
    content = head if remote and len(head) <= HEADER_READ_LIMIT else None
    return Loaded(envelope, received_in(head[:HEADER_READ_LIMIT]), content)


def _load_all(spool: Spool, queue_ids: list[str]) -> list[tuple[bool, Any]]:
    """Blocking: :func:`load` each message; (True, Loaded) or (False, the exception)."""
    out: list[tuple[bool, Any]] = []
    for queue_id in queue_ids:
        try:
            out.append((True, load(spool, queue_id)))
        except Exception as exc:  # the caller of that message gets it
            out.append((False, exc))
    return out


class BatchLoader:
    """Reads queued messages in batches: the messages asked for in one reactor turn, or while
    the previous batch was being read, are read by one thread job (at most
    :data:`BATCH_SIZE` in one), so a scan that finds many messages costs a few thread hops
    instead of one per message."""

    def __init__(self, in_thread: Callable[..., defer.Deferred[Any]], reactor: Any) -> None:
        self.in_thread = in_thread
        self.reactor = reactor
        self._waiting: dict[Spool, list[tuple[str, defer.Deferred[Loaded]]]] = {}
        self._running = False

    def load(self, spool: Spool, queue_id: str) -> defer.Deferred[Loaded]:
        """Fire with the message ``queue_id`` of ``spool`` as :func:`load` reads it (or fail
        with what :func:`load` raised)."""
        d: defer.Deferred[Loaded] = defer.Deferred()
        self._waiting.setdefault(spool, []).append((queue_id, d))
        if not self._running:
            self._running = True
            self.reactor.callLater(0, lambda: defer.ensureDeferred(self._run()))
        return d

    async def _run(self) -> None:
        try:
            while self._waiting:
                spool = next(iter(self._waiting))
                items = self._waiting[spool]
                batch, rest = items[:BATCH_SIZE], items[BATCH_SIZE:]
                if rest:
                    self._waiting[spool] = rest
                else:
                    del self._waiting[spool]
                try:
                    results = await self.in_thread(_load_all, spool, [q for q, _ in batch])
                except Exception as exc:
                    for _, d in batch:
                        d.errback(exc)
                    continue
                for (_, d), (ok, value) in zip(batch, results, strict=True):
                    if ok:
                        d.callback(value)
                    else:
                        d.errback(value)
        finally:
            self._running = False
