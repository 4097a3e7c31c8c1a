"""How the queue runner reports a delivery outcome: the log line, the activity counters and
the event bus (category ``deliveries`` of service ``queue``)."""

from __future__ import annotations

from typing import Any

from mailmax.core.logfile import mail_logger
from mailmax.core.observe.events import EventBus
from mailmax.core.outbound.delivery import RemoteOutcome
from mailmax.core.outbound.retry import Schedule
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient

#: The per-message lines (the mail log; see :mod:`mailmax.core.logfile`).
mail_log = mail_logger("mailmax.queue")


class DeliveryReportMixin:
    """Logs, counts and publishes delivery outcomes for :class:`QueueRunner`."""

    # provided by QueueRunner
    schedule: Schedule
    events: EventBus
    metrics: Any

    def _log_remote(
        self, envelope: SpoolEnvelope, recipient: SpoolRecipient, outcome: RemoteOutcome | None
    ) -> None:
        if outcome is not None:
            result = outcome.state
        elif recipient.state == "deferred" and self.schedule.stage(recipient.attempts) == "soft":
            result = "soft-error"
        else:
            result = recipient.state
        detail = recipient.last_error if outcome is None else outcome.diagnostic
        mail_log.info(
            "delivery {queue_id} to={rcpt} relay={relay} result={result} ({detail})",
            queue_id=envelope.id,
            rcpt=recipient.address,
            relay=(outcome.remote if outcome else "") or "-",
            result=result,
            detail=detail,
        )
        relay = (outcome.remote if outcome else "") or "-"
        self._note_delivery(
            result,
            f"{envelope.id} to {recipient.address} via {relay}: {result} ({detail})",
            recipient.address,
        )

    def _note_delivery(self, result: str, text: str, address: str) -> None:
        """Count a delivery outcome by result and publish it."""
        if self.metrics is not None:
            self.metrics.increment(f"mailmax.deliveries.{result}")
        domain = address.rpartition("@")[2].lower()
        self.events.emit("queue", "deliveries", text, domains=(domain,) if domain else ())
