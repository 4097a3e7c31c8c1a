"""The queue runner service: delivers spooled messages, retries, bounces.

Each queued message is handled by one coroutine on the reactor thread at a time; blocking work
(reading envelopes, directory look-ups, Maildir writes, envelope rewrites) runs in the delivery
thread pool. Local recipients are stored in their Maildirs (:mod:`.local`); remote ones are
sent by :class:`~mailmax.core.outbound.delivery.OutboundDelivery`. Per recipient the outcome
is recorded in the envelope (``spool.save``); permanent failures are reported to the sender
in one DSN per pass, queued through the spool like any other message; a message whose
recipients are all done is removed.

Recipient states: ``pending`` -> ``delivered`` | ``deferred`` (tried again on the retry
schedule of :mod:`mailmax.core.outbound.retry`: the retry queue, then the soft-error queue
with a warning to the sender) | ``failed`` (a DSN is due) -> ``bounced`` (the DSN is queued,
or none may be sent). Remote recipients of ETRN domains move to the hold directory
(:mod:`mailmax.core.outbound.hold`) until :meth:`QueueRunner.release` sends them.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.observe.events import EventBus
from mailmax.core.outbound.delivery import OutboundDelivery
from mailmax.core.outbound.hold import HoldQueue
from mailmax.core.outbound.retry import Schedule
from mailmax.core.queue.admin import QueueAdminMixin
from mailmax.core.queue.control import ControlWatcher
from mailmax.core.queue.loading import (
    WAITING,
    BatchLoader,
    Loaded,
    count_received,
    received_in,
)
from mailmax.core.queue.local import LocalDelivery
from mailmax.core.queue.notices import Notifier, status_of
from mailmax.core.queue.remover import BatchRemover
from mailmax.core.queue.reporting import DeliveryReportMixin
from mailmax.core.queue.results import RecipientResultsMixin
from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")

__all__ = ["QueueRunner", "count_received", "runner_for", "status_of"]

#: Seconds between sweeps of the hold directory for mail held too long.
HOLD_SWEEP_SECONDS = 3600.0

_RUNNERS: weakref.WeakKeyDictionary[Spool, QueueRunner] = weakref.WeakKeyDictionary()


def runner_for(spool: Spool) -> QueueRunner | None:
    """The running queue runner of ``spool`` (the SMTP server's way to reach it for ETRN)."""
    return _RUNNERS.get(spool)


class QueueRunner(QueueAdminMixin, RecipientResultsMixin, DeliveryReportMixin, Service):
    """Delivers every message of the spool to its local and remote recipients."""

    def __init__(
        self,
        *,
        spool: Spool,
        directory: Any,
        plugins: Callable[[], PluginSet],
        settings: Settings,
        reactor: Any = None,
        outbound: OutboundDelivery | None = None,
        cluster: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        queue = settings.queue
        self.spool = spool
        self.directory = directory
        self.plugins = plugins
        self.settings = settings
        self.reactor = reactor
        self.schedule = Schedule.from_settings(queue)
        self._pool = ThreadPool(0, queue.delivery_threads, "mailmax-delivery")
        #: Removals fsync the queue directory; their own thread keeps them off the others' way.
        self._remove_pool = ThreadPool(0, 1, "mailmax-queue-remove")
        self.local = LocalDelivery(
            directory=directory,
            in_thread=self._in_thread,
            fsync=spool.fsync,
            cache_seconds=min(settings.server.directory_cache_seconds, 1.0),
            spool=spool,
            cluster=cluster,
        )
        self.outbound = outbound or OutboundDelivery(
            settings=settings,
            reactor=reactor,
            domain_record=lambda name: self._in_thread(directory.get_domain, name),
            node_route=None if cluster is None else partial(self._node_route, cluster),
        )
        self.hold = HoldQueue(
            settings.path(queue.hold_dir),
            fsync=spool.fsync,
            reactor=reactor,
            in_thread=self._in_thread,
        )
        self.notices = Notifier(
            spool=spool, directory=directory, settings=settings, in_thread=self._in_thread
        )
        self.control_watcher = ControlWatcher(
            spool.directory, self.control, reactor, self._in_thread
        )
        self._loader = BatchLoader(self._in_thread, reactor)
        self._remover = BatchRemover(partial(threads.deferToThreadPool, reactor, self._remove_pool))
        #: Messages done and being removed (never processed again meanwhile).
        self._removing: dict[str, defer.Deferred[None]] = {}
        self._semaphore = defer.DeferredSemaphore(
            queue.delivery_threads * 2 + queue.max_sessions * 5
        )
        self._active: dict[str, defer.Deferred[None]] = {}
        self._due: dict[str, float] = {}
        self._fresh: set[str] = set()
        self._loops: list[task.LoopingCall] = []
        self._scanning = False
        self._resume_local = False
        self._rescan = False
        self._stopping = False
        #: Where deliveries are published (category ``deliveries`` of service ``queue``).
        self.events = EventBus()
        #: The host's counters (:class:`~mailmax.core.pluginhost.metrics.Metrics`), or None:
        #: deliveries are counted there by result.
        self.metrics: Any = None

    def _node_route(self, cluster: Any, address: str) -> defer.Deferred[Any]:
        """Clustered domains: the route of ``address`` to its home node (see
        :func:`mailmax.core.cluster.nodes.route_for_lookup`)."""
        from mailmax.core.cluster.nodes import route_for_lookup

        found = self._in_thread(self.directory.lookup_recipient, address)
        return found.addCallback(lambda lookup: route_for_lookup(cluster, lookup))

    # ------------------------------------------------------------------ service
    def startService(self) -> None:
        """Resume the messages on disk, follow new commits, scan periodically."""
        super().startService()
        self._stopping = False
        self._resume_local = True
        self._pool.start()
        self._remove_pool.start()
        _RUNNERS[self.spool] = self
        self.spool.committed.append(self._on_committed)
        opened = self.hold.open_if_present()
        opened.addCallback(lambda _: self.sweep_hold())
        opened.addErrback(lambda f: log.failure("cannot open the hold directory", f))
        self.control_watcher.start()
        for interval, call in (
            (self.settings.queue.scan_interval, self.wake),
            (HOLD_SWEEP_SECONDS, self.sweep_hold),
        ):
            loop = task.LoopingCall(call)
            loop.clock = self.reactor
            loop.start(interval, now=call is self.wake)
            self._loops.append(loop)

    def stopService(self) -> defer.Deferred[None]:
        """Let deliveries in flight finish, then stop the threads."""
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        self.control_watcher.stop()
        if self._on_committed in self.spool.committed:
            self.spool.committed.remove(self._on_committed)
        if _RUNNERS.get(self.spool) is self:
            del _RUNNERS[self.spool]
        super().stopService()
        done = defer.DeferredList(list(self._active.values()))

        def stop_threads(_: Any) -> defer.Deferred[None]:
            self.outbound.close()
            stopped = self._remover.drained()
            if self.hold.running:
                stopped.addBoth(lambda _: self.hold.stop())
            stopped.addBoth(lambda _: self._stop_pools())
            return stopped

        return done.addCallback(stop_threads)

    def counts(self) -> dict[str, int]:
        """Queued messages by state: ``active`` (being delivered) and ``deferred`` (waiting for
        their next attempt)."""
        return {"active": len(self._active), "deferred": len(self._due)}

    def reconfigure(self, settings: Settings) -> None:
        """Use ``settings`` from now on (a reload): retry schedule, scan interval, bounces and
        outbound delivery; threads and directories stay those of the start."""
        self.settings = settings
        self.schedule = Schedule.from_settings(settings.queue)
        self.notices.settings = settings
        self.outbound.reconfigure(settings)
        scan = self._loops[0] if self._loops else None
        if scan is not None and scan.interval != settings.queue.scan_interval:
            scan.stop()
            scan.start(settings.queue.scan_interval, now=False)

    def _stop_pools(self) -> None:
        self._pool.stop()
        self._remove_pool.stop()

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
        busy, removing, due = self._active, self._removing, self._due
        resume, self._resume_local = self._resume_local, False
        for queue_id in ids:
            if queue_id not in busy and queue_id not in removing and due.get(queue_id, 0.0) <= now:
                if resume:  # the first scan since start
                    self._schedule(queue_id, partial(self._process, queue_id, resume=True))
                else:
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

    def _schedule(self, queue_id: str, work: Callable[[], Any] | None = None) -> None:
        if self._stopping or queue_id in self._active or queue_id in self._removing:
            return
        d = self._semaphore.run(self._guarded, queue_id, work or (lambda: self._process(queue_id)))
        self._active[queue_id] = d

        def finished(_: Any) -> None:
            self._active.pop(queue_id, None)
            self._fresh.discard(queue_id)

        d.addBoth(finished)

    def _guarded(self, queue_id: str, work: Callable[[], Any]) -> defer.Deferred[None]:
        d = defer.ensureDeferred(work())
        d.addErrback(
            lambda f: log.failure("queue {queue_id}: processing failed", f, queue_id=queue_id)
        )
        return d

    # ------------------------------------------------------------------ one message
    async def _open(self, spool: Spool, queue_id: str) -> Loaded | None:
        recent = spool.take_recent(queue_id)  # just accepted: no need to read it back
        if recent is not None and not any(r.kind == "relay" for r in recent[0].recipients):
            return Loaded(recent[0], received_in(recent[1]))
        try:
            return await self._loader.load(spool, queue_id)
        except FileNotFoundError:
            self._due.pop(queue_id, None)
            return None
        except ValueError as exc:
            log.error(
                "queue {queue_id}: unusable envelope ({error}); moved to corrupt/",
                queue_id=queue_id,
                error=str(exc),
            )
            await self._in_thread(spool.quarantine, queue_id)
            return None

    async def _process(self, queue_id: str, *, resume: bool = False) -> None:
        """Deliver what is due of one message; ``resume`` (the first pass since start): its
        local recipients deferred by a local failure are due too."""
        if self._stopping:
            return
        loaded = await self._open(self.spool, queue_id)
        if loaded is None:
            return
        envelope, hops = loaded.envelope, loaded.hops
        path = self.spool.message_path(queue_id)
        now = time.time()
        # The limit counts the Received headers a message arrives with (the SMTP server refuses
        # more at DATA); the queued copy also carries this server's own.
        if hops - 1 > self.settings.smtp.max_hops:
            self._too_many_hops(envelope, hops - 1)
        changed = await self._deliver_local(envelope, path, now, resume=resume)
        due = [
            i
            for i, r in enumerate(envelope.recipients)
            if r.kind == "relay" and r.state in WAITING and r.next_attempt <= now
        ]
        if due and not self._stopping:
            if changed:  # local results are on disk before the remote attempt
                await self._in_thread(self.spool.save, envelope)
            await self._deliver_remote(envelope, path, due, content=loaded.content)
            changed = True
        await self._finish(self.spool, envelope, path, changed)
        if envelope.recipients and not all(r.final for r in envelope.recipients):
            self._due[queue_id] = self._next_due(envelope)
        else:
            self._due.pop(queue_id, None)

    async def _finish(
        self, spool: Spool, envelope: SpoolEnvelope, path: Path, changed: bool
    ) -> None:
        """Bounce the failed recipients, then save the envelope or remove the message."""
        failures = [r for r in envelope.recipients if r.state == "failed"]
        if failures and await self.notices.bounce(envelope, path, failures):
            for recipient in failures:
                recipient.state = "bounced"
            changed = True
        if all(r.final for r in envelope.recipients):
            self._remove(spool, envelope.id)
        elif changed:
            await self._in_thread(spool.save, envelope)

    def _remove(self, spool: Spool, queue_id: str) -> None:
        """Remove a finished message in the next batch, without waiting for it."""
        key = queue_id if spool is self.spool else f"hold:{queue_id}"
        d = self._remover.remove(spool, queue_id)
        self._removing[key] = d

        def removed(result: Any) -> None:
            self._removing.pop(key, None)
            if isinstance(result, Failure):
                log.failure("queue {queue_id}: cannot remove it", result, queue_id=queue_id)

        d.addBoth(removed)
