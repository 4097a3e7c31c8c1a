"""What the queue runner does with one message's recipients: local deliveries and their
outcomes, remote attempts and their results, the retry schedule, ETRN holds, hop limits.

A mixin of :class:`~mailmax.core.queue.runner.QueueRunner`, kept apart from its run loop
(scheduling, loading and finishing messages).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.logfile import mail_logger
from mailmax.core.outbound.delivery import OutboundDelivery, RemoteOutcome
from mailmax.core.outbound.hold import HoldQueue
from mailmax.core.outbound.retry import Schedule
from mailmax.core.queue.loading import WAITING
from mailmax.core.queue.local import LocalDelivery, Outcome, classify
from mailmax.core.queue.notices import Notifier
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")
#: The per-message lines (the mail log; see :mod:`mailmax.core.logfile`).
mail_log = mail_logger("mailmax.queue")

#: A message never grows past this many recipients through aliases and forwarding.
MAX_RECIPIENTS = 1000


class RecipientResultsMixin:
    """Delivers the due recipients of a message and records each outcome in its envelope."""

    # provided by QueueRunner
    spool: Spool
    directory: Any
    plugins: Callable[[], PluginSet]
    settings: Settings
    schedule: Schedule
    local: LocalDelivery
    outbound: OutboundDelivery
    hold: HoldQueue
    notices: Notifier
    _fresh: set[str]
    _stopping: bool
    _in_thread: Callable[..., defer.Deferred[Any]]
    _log_remote: Callable[[SpoolEnvelope, SpoolRecipient, RemoteOutcome | None], None]
    _note_delivery: Callable[[str, str, str], None]

    def _too_many_hops(self, envelope: SpoolEnvelope, hops: int) -> None:
        limit = self.settings.smtp.max_hops
        for recipient in envelope.recipients:
            if recipient.state in WAITING:
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

    # ------------------------------------------------------------------ local recipients
    async def _deliver_local(
        self, envelope: SpoolEnvelope, path: Path, now: float, *, resume: bool = False
    ) -> bool:
        """Deliver every due local recipient; True when the envelope changed. With ``resume``
        a deferred local recipient is due at once: its delivery failed here (a Maildir, the
        directory, a plugin), and a restart is when such a failure has most likely gone."""
        plugins = self.plugins()
        fresh = envelope.id in self._fresh
        changed = False
        index = 0
        while index < len(envelope.recipients) and not self._stopping:
            recipient = envelope.recipients[index]
            if (
                recipient.kind == "local"
                and recipient.state in WAITING
                and (recipient.next_attempt <= now or (resume and recipient.state == "deferred"))
            ):
                if changed:  # the previous recipient's state is on disk first
                    await self._in_thread(self.spool.save, envelope)
                outcome = await self.local.deliver(
                    plugins, envelope, index, path, fresh=fresh and recipient.attempts == 0
                )
                await self._apply_local(envelope, recipient, outcome, path)
                changed = True
            index += 1
        return changed

    async def _apply_local(
        self, envelope: SpoolEnvelope, recipient: SpoolRecipient, outcome: Outcome, path: Path
    ) -> None:
        """Record ``outcome`` in ``recipient`` and log the delivery line."""
        if outcome.extra:
            added, dropped = await self._add_recipients(envelope, outcome.extra)
            log.info(
                "queue {queue_id}: {rcpt} expanded to {added}",
                queue_id=envelope.id,
                rcpt=recipient.address,
                added=added,
            )
            if dropped:  # never lost in silence: the sender learns which copies were not made
                outcome = Outcome(
                    "failed",
                    diagnostic=f"550 5.5.3 <{recipient.address}>: expands to more than "
                    f"{MAX_RECIPIENTS} recipients; not delivered to {len(dropped)} of its "
                    f"targets ({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})",
                )
        result = outcome.result
        if outcome.notice is not None:
            await self.notices.over_limit(outcome.notice)
        if result in ("delivered", "discarded", "expanded"):
            recipient.state, recipient.last_error = "delivered", ""
        elif result == "rerouted":
            recipient.kind, recipient.state = "relay", "pending"
        elif result == "failed":
            recipient.state, recipient.last_error = "failed", outcome.diagnostic
        else:
            result = await self._deferred(envelope, path, [(recipient, outcome.diagnostic, None)])
        mail_log.info(
            "delivery {queue_id} to={rcpt} folder={folder} result={result}{detail}",
            queue_id=envelope.id,
            rcpt=recipient.mailbox or recipient.address,
            folder=outcome.folder or "-",
            result=result,
            detail=(f" ({recipient.last_error})" if recipient.last_error else "")
            + (f" [{outcome.note}]" if outcome.note else ""),
        )
        self._note_delivery(
            result,
            f"{envelope.id} to {recipient.mailbox or recipient.address}: {result}",
            recipient.mailbox or recipient.address,
        )

    async def _add_recipients(
        self, envelope: SpoolEnvelope, addresses: list[str]
    ) -> tuple[list[str], list[str]]:
        """Append the new addresses (not yet in the envelope) as recipients; return those
        added and those left out because the envelope holds :data:`MAX_RECIPIENTS`."""
        known = {r.address.lower() for r in envelope.recipients}
        known |= {r.mailbox.lower() for r in envelope.recipients if r.mailbox}
        added: list[str] = []
        dropped: list[str] = []
        for address in addresses:
            if address.lower() in known:
                continue
            known.add(address.lower())
            if len(envelope.recipients) >= MAX_RECIPIENTS:
                dropped.append(address)
                continue
            recipient = await self._in_thread(classify, self.directory, address)
            envelope.recipients.append(recipient)
            added.append(address)
        return added, dropped

    # ------------------------------------------------------------------ retries
    async def _deferred(
        self,
        envelope: SpoolEnvelope,
        path: Path,
        failures: Sequence[tuple[SpoolRecipient, str, float | None]],
    ) -> str:
        """Apply the retry schedule to recipients that failed temporarily.

        ``failures`` holds (recipient, diagnostic, patient days or None). Recipients that just
        entered the soft-error queue get the sender one warning. Returns the last result.
        """
        now = time.time()
        warnings: list[tuple[SpoolRecipient, float | None]] = []
        result = "deferred"
        for recipient, diagnostic, patient_days in failures:
            recipient.attempts += 1
            recipient.last_error = diagnostic
            patient = None
            if patient_days is not None:
                patient = envelope.received_at + patient_days * 86400
            decision = self.schedule.after_failure(
                recipient.attempts, now, diagnostic, patient_until=patient
            )
            if decision.retry_at is None:
                recipient.state, recipient.last_error = "failed", decision.diagnostic
                result = "failed"
                continue
            recipient.state, recipient.next_attempt = "deferred", decision.retry_at
            result = "deferred" if decision.stage == "retry" else "soft-error"
            if decision.warn:
                warnings.append((recipient, decision.until))
        if warnings:
            await self.notices.warn(envelope, path, warnings)
        return result

    def _next_due(self, envelope: SpoolEnvelope) -> float:
        due = math.inf
        for recipient in envelope.recipients:
            if recipient.state == "failed":
                due = min(due, time.time() + self.schedule.retry_seconds)
            elif recipient.state in WAITING:
                due = min(due, recipient.next_attempt)
        return due

    # ------------------------------------------------------------------ remote recipients
    async def _deliver_remote(
        self,
        envelope: SpoolEnvelope,
        path: Path,
        due: list[int],
        released: frozenset[str] = frozenset(),
        content: bytes | None = None,
    ) -> None:
        """Send the ``due`` remote recipients and record each result."""
        outcomes = await self.outbound.deliver(
            self.plugins(), envelope, path, due, released=released, content=content
        )
        temporary: list[tuple[SpoolRecipient, str, float | None]] = []
        held: list[int] = []
        for index in due:
            outcome = outcomes[index]
            recipient = envelope.recipients[index]
            diagnostic = outcome.diagnostic
            if outcome.remote and outcome.state in ("deferred", "failed"):
                diagnostic = f"{diagnostic} (at {outcome.remote})"
            if outcome.state == "held":
                held.append(index)
                continue
            if outcome.state == "deferred" and released:
                recipient.attempts += 1
                recipient.state, recipient.last_error = "deferred", diagnostic
            elif outcome.state == "deferred":
                temporary.append((recipient, diagnostic, outcome.route.patient_days))
            elif outcome.state == "failed":
                recipient.attempts += 1
                recipient.state, recipient.last_error = "failed", diagnostic
            else:
                if outcome.state == "delivered":
                    recipient.attempts += 1
                recipient.state, recipient.last_error = "delivered", ""
            self._log_remote(envelope, recipient, outcome)
        if temporary:
            await self._deferred(envelope, path, temporary)
            for recipient, _, _ in temporary:
                self._log_remote(envelope, recipient, None)
        if held:
            await self._hold(envelope, path, held)

    async def _hold(self, envelope: SpoolEnvelope, path: Path, indexes: list[int]) -> None:
        """Move the recipients ``indexes`` to the hold directory (ETRN domains)."""
        try:
            held_id = await self.hold.hold(envelope, path, indexes)
        except Exception as exc:
            log.failure("queue {queue_id}: cannot hold the mail for ETRN", queue_id=envelope.id)
            failures = [
                (envelope.recipients[i], f"451 4.3.0 Cannot hold the mail for ETRN: {exc}", None)
                for i in indexes
            ]
            await self._deferred(envelope, path, failures)
            return
        for index in indexes:
            recipient = envelope.recipients[index]
            recipient.state, recipient.last_error = "delivered", f"held for ETRN as {held_id}"
            log.info(
                "delivery {queue_id} to={rcpt} result=held (for ETRN as {held_id})",
                queue_id=envelope.id,
                rcpt=recipient.address,
                held_id=held_id,
            )
