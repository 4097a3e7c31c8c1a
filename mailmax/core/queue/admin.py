"""The queue runner's administrative side: ETRN releases, held-mail sweeps, admin requests.

A mixin of :class:`~mailmax.core.queue.runner.QueueRunner`, kept apart so each file has one
job. Held mail (ETRN domains) is sent only when :meth:`QueueAdminMixin.release` asks for
its domain; the hourly sweep bounces what waited longer than ``[queue] hold_days`` (and what
an admin returned to the sender). Admin requests (``mailmax queue retry|delete|bounce``, via
:mod:`mailmax.core.queue.control`) are carried out between deliveries: a message being
delivered is changed only once its delivery is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.config import Settings
from mailmax.core.outbound.hold import HoldQueue
from mailmax.core.queue.control import ControlError, Request, Result, change, describe, waits_for
from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")

WAITING = ("pending", "deferred")


def _after(busy: defer.Deferred[Any]) -> defer.Deferred[None]:
    """A Deferred firing (with None) once ``busy`` has fired, leaving its result alone."""
    waiter: defer.Deferred[None] = defer.Deferred()

    def fire(result: Any) -> Any:
        waiter.callback(None)
        return result

    busy.addBoth(fire)
    return waiter


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class QueueAdminMixin:
    """ETRN releases, the hold sweep and admin requests for :class:`QueueRunner`."""

    # provided by QueueRunner
    spool: Spool
    hold: HoldQueue
    settings: Settings
    reactor: Any
    _active: dict[str, defer.Deferred[None]]
    _removing: dict[str, defer.Deferred[None]]
    _due: dict[str, float]
    _stopping: bool
    _schedule: Callable[..., None]
    _in_thread: Callable[..., defer.Deferred[Any]]
    _open: Callable[[Spool, str], Any]
    _finish: Callable[[Spool, SpoolEnvelope, Path, bool], Any]
    _deliver_remote: Callable[..., Any]
    _process: Callable[[str], Any]

    # ------------------------------------------------------------------ ETRN
    async def release(self, domains: Iterable[str]) -> int:
        """Send the mail held for ``domains`` now (ETRN); return how many messages wait."""
        await self.hold.ensure_open()
        wanted = frozenset(d.lower() for d in domains)
        ids = self.hold.ids_for(wanted)
        for queue_id in ids:
            self._schedule(f"hold:{queue_id}", partial(self._process_held, queue_id, wanted))
        log.info(
            "release of {domains}: {count} held message(s)", domains=sorted(wanted), count=len(ids)
        )
        return len(ids)

    def held_domains(self, node: str, subdomains: bool) -> list[str]:
        """The domains with held mail matching ``node`` (see :meth:`HoldQueue.domains`)."""
        return self.hold.domains(node, subdomains)

    async def _process_held(self, queue_id: str, domains: frozenset[str]) -> None:
        if self._stopping:
            return
        loaded = await self._open(self.hold.spool, queue_id)
        if loaded is None:
            return
        envelope = loaded.envelope
        path = self.hold.spool.message_path(queue_id)
        due = [
            i
            for i, r in enumerate(envelope.recipients)
            if r.state in WAITING and _domain(r.address) in domains
        ]
        if due:
            await self._deliver_remote(
                envelope, path, due, released=domains, content=loaded.content
            )
        await self._finish(self.hold.spool, envelope, path, bool(due))
        self.hold.forget(envelope, removed=all(r.final for r in envelope.recipients))

    def sweep_hold(self) -> None:
        """Bounce held mail that waited longer than ``[queue] hold_days`` or was returned."""
        if not self.hold.running or self._stopping:
            return
        limit = time.time() - self.settings.queue.hold_days * 86400
        for queue_id in self.hold.spool.pending_ids():
            self._schedule(f"hold:{queue_id}", partial(self._sweep_held, queue_id, limit))

    async def _sweep_held(self, queue_id: str, limit: float) -> None:
        loaded = await self._open(self.hold.spool, queue_id)
        if loaded is None:
            return
        envelope = loaded.envelope
        expired = envelope.received_at <= limit
        if expired:
            days = self.settings.queue.hold_days
            for recipient in envelope.recipients:
                if recipient.state in WAITING:
                    recipient.state = "failed"
                    recipient.last_error = (
                        f"451 4.4.7 Held for ETRN for {days:g} days; the domain never asked for it"
                    )
        elif not any(r.state == "failed" for r in envelope.recipients):
            return
        path = self.hold.spool.message_path(queue_id)
        await self._finish(self.hold.spool, envelope, path, True)
        self.hold.forget(envelope, removed=all(r.final for r in envelope.recipients))

    # ------------------------------------------------------------------ admin requests
    async def control(self, request: Request) -> Result:
        """Carry out an admin request on the queue and the hold directory."""
        if self.hold.directory.is_dir():
            await self.hold.ensure_open()
        targets = await self._targets(request)
        if request.ids and not targets:
            raise ControlError(f"no queued message {', '.join(request.ids)}")
        result = Result()
        for spool, queue_id in targets:
            if await self._control_one(spool, queue_id, request):
                result.ids.append(queue_id)
        if request.action == "retry" and request.domain and not request.ids:
            result.released = self.hold.domains(request.domain, False)
            if result.released:
                await self.release(result.released)
        result.message = describe(request.action, len(result.ids), result.released)
        log.info("queue admin: {message}", message=result.message)
        return result

    async def _targets(self, request: Request) -> list[tuple[Spool, str]]:
        spools = [self.spool] + ([self.hold.spool] if self.hold.running else [])
        found: list[tuple[Spool, str]] = []
        for spool in spools:
            if spool is self.hold.spool and request.action == "retry" and not request.ids:
                continue  # held mail is retried by releasing its domain
            ids = await self._in_thread(spool.pending_ids)
            for queue_id in ids:
                if request.ids and queue_id not in request.ids:
                    continue
                if request.domain and not request.ids:
                    envelope = await self._quiet_load(spool, queue_id)
                    if envelope is None or not waits_for(envelope, request.domain):
                        continue
                found.append((spool, queue_id))
        return found

    async def _quiet_load(self, spool: Spool, queue_id: str) -> SpoolEnvelope | None:
        try:
            return await self._in_thread(spool.load, queue_id)
        except (OSError, ValueError):
            return None

    async def _control_one(self, spool: Spool, queue_id: str, request: Request) -> bool:
        held = spool is self.hold.spool
        key = f"hold:{queue_id}" if held else queue_id
        while key in self._active or key in self._removing:  # in progress: finishes first
            await _after(self._active.get(key) or self._removing[key])
        mine: defer.Deferred[None] = defer.Deferred()
        self._active[key] = mine
        done = False
        try:
            envelope = await self._quiet_load(spool, queue_id)
            if envelope is None:
                return False
            path = spool.message_path(queue_id)
            if request.action == "delete":
                await self._in_thread(spool.remove, queue_id)
                if held:
                    self.hold.forget(envelope, removed=True)
                self._due.pop(queue_id, None)
                log.info("queue {queue_id}: deleted by the administrator", queue_id=queue_id)
                return True
            done = change(envelope, request.action)
            if request.action == "bounce" and done:
                await self._finish(spool, envelope, path, True)
                if held:
                    self.hold.forget(envelope, removed=all(r.final for r in envelope.recipients))
            elif done:
                await self._in_thread(spool.save, envelope)
            if held and request.action == "retry":
                domains = frozenset(
                    _domain(r.address) for r in envelope.recipients if r.state in WAITING
                )
                done = bool(domains)
                self._later(key, partial(self._process_held, queue_id, domains))
            elif not held and done:
                self._due.pop(queue_id, None)
                self._later(key, lambda: self._process(queue_id))
            return done
        finally:
            del self._active[key]
            mine.callback(None)

    def _later(self, key: str, work: Any) -> None:
        self.reactor.callLater(0, self._schedule, key, work)
