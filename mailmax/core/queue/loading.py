"""Reading a queued message as its processing starts: the envelope, the Received count and,
for remote delivery of a small message, its content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool

__all__ = ["HEADER_READ_LIMIT", "WAITING", "Loaded", "count_received", "load", "received_in"]

#: Bytes of the message read to count Received headers.
HEADER_READ_LIMIT = 256 * 1024
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
