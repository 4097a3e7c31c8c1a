"""The queue runner service: delivers spooled messages, retries, bounces (S4, Q1, Q4, Q5).

Each queued message is handled by one coroutine on the reactor thread at a time; blocking work
(reading envelopes, directory look-ups, Maildir writes, envelope rewrites) runs in the delivery
thread pool. Per local recipient the outcome is recorded in the envelope (``spool.save``);
permanent failures are reported to the sender in one DSN per pass, queued through the spool
like any other message; a message whose recipients are all done is removed.

Recipient states: ``pending`` -> ``delivered`` | ``deferred`` (retried after
``queue.retry_minutes``, up to ``queue.max_retries`` times) | ``failed`` (a DSN is due) ->
``bounced`` (the DSN is queued, or none may be sent). ``relay`` recipients stay ``pending`` for
outbound delivery.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.queue import bounce
from mailmax.core.queue.local import LocalDelivery, Outcome, classify
from mailmax.core.spool import Spool, SpoolEnvelope, SpoolRecipient

log = Logger(namespace="mailmax.queue")

_STATUS_RE = re.compile(r"^\d{3} ([245]\.\d{1,3}\.\d{1,3})\b")
#: Bytes of the message read to count Received headers (Q5).
HEADER_READ_LIMIT = 256 * 1024
#: A message never grows past this many recipients through aliases and forwarding.
MAX_RECIPIENTS = 1000


def status_of(diagnostic: str, default: str = "5.0.0") -> str:
    """The enhanced status code in an SMTP-style reply (``"552 5.2.2 ..."`` -> ``"5.2.2"``)."""
    match = _STATUS_RE.match(diagnostic)
    return match.group(1) if match else default


def count_received(path: Path) -> int:
    """How many ``Received:`` header fields the message at ``path`` has (blocking)."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_READ_LIMIT)
    count = 0
    for line in head.split(b"\n"):
        if line in (b"", b"\r"):
            break
        if line[:9].lower() == b"received:":
            count += 1
    return count


class QueueRunner(Service):
    """Delivers every message of the spool to its local recipients."""

    def __init__(
        self,
        *,
        spool: Spool,
        directory: Any,
        plugins: Callable[[], PluginSet],
        settings: Settings,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.spool = spool
        self.directory = directory
        self.plugins = plugins
        self.settings = settings
        self.reactor = reactor
        self.hostname = settings.server.hostname
        self._pool = ThreadPool(0, settings.queue.delivery_threads, "mailmax-delivery")
        self.local = LocalDelivery(
            directory=directory, in_thread=self._in_thread, fsync=spool.fsync
        )
        self._semaphore = defer.DeferredSemaphore(settings.queue.delivery_threads * 2)
        self._active: dict[str, defer.Deferred[None]] = {}
        self._due: dict[str, float] = {}
        self._fresh: set[str] = set()
        self._loop: task.LoopingCall | None = None
        self._scanning = False
        self._rescan = False
        self._stopping = False
        self._relay_warned = False

    # ------------------------------------------------------------------ service
    def startService(self) -> None:
        """Resume the messages on disk, follow new commits, scan periodically."""
        super().startService()
        self._stopping = False
        self._pool.start()
        self.spool.committed.append(self._on_committed)
        self._loop = task.LoopingCall(self.wake)
        self._loop.clock = self.reactor
        self._loop.start(self.settings.queue.scan_interval, now=True)

    def stopService(self) -> defer.Deferred[None]:
        """Let deliveries in flight finish, then stop the threads."""
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._on_committed in self.spool.committed:
            self.spool.committed.remove(self._on_committed)
        super().stopService()
        done = defer.DeferredList(list(self._active.values()))

        def stop_threads(_: Any) -> None:
            self._pool.stop()

        return done.addCallback(stop_threads)

    def wake(self) -> None:
        """Deliver every due message now (also called every ``queue.scan_interval``)."""
        if self._stopping:
            return
        if self._scanning:
            self._rescan = True
            return
        self._scanning = True
        d = self._in_thread(self.spool.pending_ids)
        d.addCallback(self._scanned)
        d.addErrback(lambda f: log.failure("queue scan failed", f))
        d.addBoth(self._scan_done)

    # ------------------------------------------------------------------ scheduling
    def _in_thread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self._pool, fn, *args, **kw)

    def _scanned(self, ids: list[str]) -> None:
        now = time.time()
        present = set(ids)
        for queue_id in [q for q in self._due if q not in present]:
            del self._due[queue_id]
        for queue_id in ids:
            if self._due.get(queue_id, 0.0) <= now:
                self._schedule(queue_id)

    def _scan_done(self, _: Any) -> None:
        self._scanning = False
        if self._rescan:
            self._rescan = False
            self.wake()

    def _on_committed(self, ids: list[str]) -> None:
        for queue_id in ids:
            self._fresh.add(queue_id)
            self._schedule(queue_id)

    def _schedule(self, queue_id: str) -> None:
        if self._stopping or queue_id in self._active:
            return
        d = self._semaphore.run(self._guarded, queue_id)
        self._active[queue_id] = d

        def finished(_: Any) -> None:
            self._active.pop(queue_id, None)
            self._fresh.discard(queue_id)

        d.addBoth(finished)

    def _guarded(self, queue_id: str) -> defer.Deferred[None]:
        d = defer.ensureDeferred(self._process(queue_id))
        d.addErrback(
            lambda f: log.failure("queue {queue_id}: processing failed", f, queue_id=queue_id)
        )
        return d

    # ------------------------------------------------------------------ one message
    async def _process(self, queue_id: str) -> None:
        if self._stopping:
            return
        try:
            envelope = await self._in_thread(self.spool.load, queue_id)
        except FileNotFoundError:
            self._due.pop(queue_id, None)
            return
        except ValueError as exc:
            log.error(
                "queue {queue_id}: unusable envelope ({error}); moved to corrupt/",
                queue_id=queue_id,
                error=str(exc),
            )
            await self._in_thread(self.spool.quarantine, queue_id)
            return
        path = self.spool.message_path(queue_id)
        now = time.time()
        if any(not r.final and r.state != "failed" for r in envelope.recipients):
            hops = await self._in_thread(count_received, path)
            if hops > self.settings.smtp.max_hops:
                self._too_many_hops(envelope, hops)
        changed = await self._deliver_local(envelope, path, now)
        if any(r.state == "failed" for r in envelope.recipients):
            changed = await self._bounce(envelope, path) or changed
        if all(r.final for r in envelope.recipients):
            await self._in_thread(self.spool.remove, queue_id)
            self._due.pop(queue_id, None)
            return
        if changed:
            await self._in_thread(self.spool.save, envelope)
        self._due[queue_id] = self._next_due(envelope)

    def _too_many_hops(self, envelope: SpoolEnvelope, hops: int) -> None:
        limit = self.settings.smtp.max_hops
        for recipient in envelope.recipients:
            if recipient.state in ("pending", "deferred"):
                recipient.state = "failed"
                recipient.last_error = (
                    f"554 5.4.6 Too many hops ({hops} Received headers, limit {limit}): mail loop?"
                )
                log.warn(
                    "delivery {queue_id} to={rcpt} result=failed: {error}",
                    queue_id=envelope.id,
                    rcpt=recipient.address,
                    error=recipient.last_error,
                )

    async def _deliver_local(self, envelope: SpoolEnvelope, path: Path, now: float) -> bool:
        """Deliver every due local recipient; True when the envelope changed."""
        plugins = self.plugins()
        fresh = envelope.id in self._fresh
        changed = False
        index = 0
        while index < len(envelope.recipients) and not self._stopping:
            recipient = envelope.recipients[index]
            if self._due_local(recipient, now):
                if changed:  # the previous recipient's state is on disk first
                    await self._in_thread(self.spool.save, envelope)
                outcome = await self.local.deliver(
                    plugins, envelope, index, path, fresh=fresh and recipient.attempts == 0
                )
                await self._apply(envelope, recipient, outcome)
                changed = True
            elif recipient.kind == "relay" and recipient.state == "pending":
                self._warn_relay()
            index += 1
        return changed

    @staticmethod
    def _due_local(recipient: SpoolRecipient, now: float) -> bool:
        return (
            recipient.kind == "local"
            and recipient.state in ("pending", "deferred")
            and recipient.next_attempt <= now
        )

    async def _apply(
        self, envelope: SpoolEnvelope, recipient: SpoolRecipient, outcome: Outcome
    ) -> None:
        """Record ``outcome`` in ``recipient`` and log the delivery line."""
        queue = self.settings.queue
        if outcome.extra:
            added = await self._add_recipients(envelope, outcome.extra)
            log.info(
                "queue {queue_id}: {rcpt} expanded to {added}",
                queue_id=envelope.id,
                rcpt=recipient.address,
                added=added,
            )
        result = outcome.result
        if result in ("delivered", "discarded", "expanded"):
            recipient.state, recipient.last_error = "delivered", ""
        elif result == "rerouted":
            recipient.kind, recipient.state = "relay", "pending"
        elif result == "failed":
            recipient.state, recipient.last_error = "failed", outcome.diagnostic
        else:
            recipient.attempts += 1
            recipient.last_error = outcome.diagnostic
            if recipient.attempts > queue.max_retries:
                recipient.state = "failed"
                recipient.last_error = (
                    f"451 4.4.7 Delivery time expired after "
                    f"{recipient.attempts} attempts; last error: {outcome.diagnostic}"
                )
                result = "failed"
            else:
                recipient.state = "deferred"
                recipient.next_attempt = time.time() + queue.retry_minutes * 60
        log.info(
            "delivery {queue_id} to={rcpt} folder={folder} result={result}{detail}",
            queue_id=envelope.id,
            rcpt=recipient.mailbox or recipient.address,
            folder=outcome.folder or "-",
            result=result,
            detail=f" ({recipient.last_error})" if recipient.last_error else "",
        )

    async def _add_recipients(self, envelope: SpoolEnvelope, addresses: list[str]) -> list[str]:
        """Append the new addresses (not yet in the envelope) as recipients."""
        known = {r.address.lower() for r in envelope.recipients}
        known |= {r.mailbox.lower() for r in envelope.recipients if r.mailbox}
        added = []
        for address in addresses:
            if address.lower() in known or len(envelope.recipients) >= MAX_RECIPIENTS:
                continue
            recipient = await self._in_thread(classify, self.directory, address)
            known.add(address.lower())
            envelope.recipients.append(recipient)
            added.append(address)
        return added

    async def _bounce(self, envelope: SpoolEnvelope, path: Path) -> bool:
        """Send one DSN for every failed recipient (Q4); True when states changed."""
        failures = [r for r in envelope.recipients if r.state == "failed"]
        if not envelope.sender:
            log.info(
                "queue {queue_id}: no bounce for {count} failed recipient(s): the sender "
                "is the null sender",
                queue_id=envelope.id,
                count=len(failures),
            )
        else:
            reports = [
                bounce.RecipientReport.for_recipient(r, status_of(r.last_error), r.last_error)
                for r in failures
            ]
            try:
                target = await self._in_thread(classify, self.directory, envelope.sender)
                made = await self._in_thread(
                    bounce.make_bounce,
                    envelope,
                    reports,
                    queue_id=self.spool.new_id(),
                    reporting_mta=self.hostname,
                    message_path=path,
                    recipient=target,
                )
                if made is not None:
                    bounce_envelope, message = made
                    bounce_id = await self.spool.accept(bounce_envelope, [message])
                    log.info(
                        "queue {queue_id}: bounce {bounce_id} to <{sender}> for {rcpts}",
                        queue_id=envelope.id,
                        bounce_id=bounce_id,
                        sender=envelope.sender,
                        rcpts=[r.address for r in failures],
                    )
            except Exception:
                log.failure(
                    "queue {queue_id}: cannot queue the bounce; will retry", queue_id=envelope.id
                )
                return False
        for recipient in failures:
            recipient.state = "bounced"
        return True

    def _next_due(self, envelope: SpoolEnvelope) -> float:
        due = math.inf
        for recipient in envelope.recipients:
            if recipient.state == "failed":
                due = min(due, time.time() + self.settings.queue.retry_minutes * 60)
            elif recipient.kind == "local" and recipient.state in ("pending", "deferred"):
                due = min(due, recipient.next_attempt)
        return due

    def _warn_relay(self) -> None:
        if not self._relay_warned:
            self._relay_warned = True
            log.warn("remote delivery is not configured: messages to other domains stay queued")
