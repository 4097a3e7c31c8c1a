"""The durable spool (Q1): every accepted message, as a raw file plus a JSON envelope.

Layout under the spool directory::

    tmp/           files being written (anything here at start is a leftover and is removed)
    msg/<id>       the raw message exactly as received (with our Received header)
    env/<id>.json  the envelope with per-recipient state; its presence is the commit point

:meth:`Spool.accept` uses group commit: the reactor thread only queues the work; a coordinator
thread takes whatever is waiting (up to ``max_batch``), a worker pool writes and fsyncs the
files of that batch in parallel, then the batch is renamed into place with one fsync per
target directory, and only then the Deferreds fire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer

RECIPIENT_KINDS = ("local", "relay")
RECIPIENT_STATES = ("pending", "delivered", "deferred", "failed", "bounced")
#: States after which nothing more happens to a recipient.
FINAL_STATES = frozenset({"delivered", "bounced"})


@dataclass
class SpoolRecipient:
    """One recipient of a queued message and its delivery state."""

    address: str
    kind: str = "local"
    mailbox: str = ""
    state: str = "pending"
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    #: ESMTP RCPT parameters (NOTIFY, ORCPT) as given.
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class SpoolEnvelope:
    """A queued message's envelope: who sent it, to whom, and how far delivery got."""

    id: str
    sender: str
    recipients: list[SpoolRecipient]
    received_at: float
    size: int = 0
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    session_id: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialise to JSON bytes."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: bytes) -> SpoolEnvelope:
        """Parse and validate JSON written by :meth:`to_json`; raise ``ValueError`` if invalid."""
        raise NotImplementedError


class Spool:
    """The queue directory shared by the SMTP receiver and the queue runner."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        threads: int = 4,
        max_batch: int = 64,
        reactor: Any = None,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.threads = threads
        self.max_batch = max_batch
        self._reactor = reactor
        #: Called on the reactor thread with the ids of each committed batch.
        self.committed: list[Callable[[list[str]], None]] = []

    def start(self) -> None:
        """Create the directories, remove leftovers, start the commit threads."""
        raise NotImplementedError

    def stop(self) -> defer.Deferred[None]:
        """Commit what is queued, then stop the threads."""
        raise NotImplementedError

    def new_id(self) -> str:
        """A unique queue id, sortable by time and safe as a file name."""
        raise NotImplementedError

    def accept(self, envelope: SpoolEnvelope, message: Sequence[bytes]) -> defer.Deferred[str]:
        """Queue ``message`` (chunks) with ``envelope``; fire with the id once durable."""
        raise NotImplementedError

    def pending_ids(self) -> list[str]:
        """Ids of every complete queued message on disk, oldest first."""
        raise NotImplementedError

    def load(self, queue_id: str) -> SpoolEnvelope:
        """Read the envelope of ``queue_id`` (blocking)."""
        raise NotImplementedError

    def message_path(self, queue_id: str) -> Path:
        """Where the raw message of ``queue_id`` is."""
        raise NotImplementedError

    def save(self, envelope: SpoolEnvelope) -> None:
        """Atomically rewrite the envelope file (blocking: call from a thread)."""
        raise NotImplementedError

    def remove(self, queue_id: str) -> None:
        """Remove a message whose recipients are all done (blocking)."""
        raise NotImplementedError
