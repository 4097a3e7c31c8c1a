"""The hold directory: mail for ETRN domains waits here until the domain asks for it.

It is a spool of its own (``[queue] hold_dir``, which may be on a bigger disk than the main
queue), written with the same durability. A message that has recipients at an ETRN domain is
copied here with those recipients only; the main queue then forgets them. An index from
domain to held messages, built when the directory is opened, lets ETRN answer at once with
the number of messages waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")

#: Runs a blocking callable in the delivery threads; returns a Deferred of its result.
InThread = Callable[..., defer.Deferred[Any]]


def domain_of(address: str) -> str:
    """The domain of ``address`` in lower case."""
    return address.rpartition("@")[2].lower()


class HoldQueue:
    """The held messages and the domains they wait for."""

    def __init__(self, directory: Path, *, fsync: bool, reactor: Any, in_thread: InThread) -> None:
        self.directory = Path(directory)
        self.spool = Spool(self.directory, fsync=fsync, threads=1, max_batch=16, reactor=reactor)
        self.in_thread = in_thread
        #: domain -> ids of held messages with a recipient there still waiting
        self.index: dict[str, set[str]] = {}
        self._opened = False
        self._waiters: list[defer.Deferred[None]] | None = None

    @property
    def running(self) -> bool:
        """True once the directory is open."""
        return self.spool.running

    def open_if_present(self) -> defer.Deferred[None]:
        """Open the directory when it exists (held mail from before a restart)."""
        if self.directory.is_dir():
            return defer.ensureDeferred(self.ensure_open())
        return defer.succeed(None)

    async def ensure_open(self) -> None:
        """Open the directory (creating it) and index what it holds; once."""
        if self._opened:
            return
        if self._waiters is not None:
            d: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(d)
            await d
            return
        self._waiters = []
        try:
            await self._open()
        except BaseException as exc:
            waiters, self._waiters = self._waiters, None
            for waiter in waiters:
                waiter.errback(exc)
            raise
        self._opened = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters:
            waiter.callback(None)

    async def _open(self) -> None:
        self.spool.start()
        ids = await self.in_thread(self.spool.pending_ids)
        for queue_id in ids:
            try:
                envelope = await self.in_thread(self.spool.load, queue_id)
            except (OSError, ValueError) as exc:
                log.error("hold {queue_id}: unusable ({error})", queue_id=queue_id, error=exc)
                continue
            self.note(envelope)

    def stop(self) -> defer.Deferred[None]:
        """Close the directory."""
        self._opened = False
        self.index.clear()
        return self.spool.stop()

    # ------------------------------------------------------------------ the index
    def note(self, envelope: SpoolEnvelope) -> None:
        """Index the recipients of ``envelope`` that still wait."""
        for recipient in envelope.recipients:
            domain = domain_of(recipient.address)
            if recipient.final or recipient.state == "failed":
                continue
            self.index.setdefault(domain, set()).add(envelope.id)

    def forget(self, envelope: SpoolEnvelope, removed: bool = False) -> None:
        """Drop ``envelope`` from the index where it no longer waits (all of it if removed)."""
        waiting = (
            set()
            if removed
            else {
                domain_of(r.address)
                for r in envelope.recipients
                if not r.final and r.state != "failed"
            }
        )
        for domain, ids in list(self.index.items()):
            if envelope.id in ids and domain not in waiting:
                ids.discard(envelope.id)
                if not ids:
                    del self.index[domain]

    def domains(self, node: str, subdomains: bool) -> list[str]:
        """Held domains matching ``node`` (and, with ``subdomains``, every domain under it)."""
        node = node.lower()
        return sorted(d for d in self.index if d == node or (subdomains and d.endswith("." + node)))

    def ids_for(self, domains: Iterable[str]) -> list[str]:
        """Ids of the messages held for any of ``domains``, oldest first."""
        found: set[str] = set()
        for domain in domains:
            found |= self.index.get(domain, set())
        return sorted(found)

    # ------------------------------------------------------------------ holding
    async def hold(
        self, envelope: SpoolEnvelope, message_path: Path, indexes: Sequence[int]
    ) -> str:
        """Copy the message with the recipients ``indexes`` into the hold directory."""
        await self.ensure_open()
        recipients = [
            replace(
                envelope.recipients[i],
                state="pending",
                attempts=0,
                next_attempt=0.0,
                last_error="held for ETRN",
                params=dict(envelope.recipients[i].params),
            )
            for i in indexes
        ]
        copy = SpoolEnvelope(
            id=self.spool.new_id(),
            sender=envelope.sender,
            recipients=recipients,
            received_at=envelope.received_at,
            client_ip=envelope.client_ip,
            helo=envelope.helo,
            auth_user=envelope.auth_user,
            session_id=envelope.session_id,
            params=dict(envelope.params),
        )
        data = await self.in_thread(Path(message_path).read_bytes)
        data = data[envelope.trace_bytes :]  # a local delivery's trace headers stay behind
        held_id = await self.spool.accept(copy, [data])
        self.note(copy)
        return held_id

    def remove(self, envelope: SpoolEnvelope) -> None:
        """Blocking: remove a held message that is done."""
        with contextlib.suppress(FileNotFoundError):
            self.spool.remove(envelope.id)
