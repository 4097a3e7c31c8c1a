"""The retry schedule: the retry queue, then the soft-error queue, then a bounce.

A delivery that fails temporarily is tried again every ``retry_minutes`` for ``max_retries``
more attempts (the retry queue). After that it moves to the soft-error queue: the sender is
warned once that delivery continues, and it is re-sent every ``soft_retry_hours`` up to
``soft_max_resends`` times. Then it bounces with status 4.4.7. A permanent failure (5xx)
bounces at once and never reaches this schedule.

Some destinations (backup MX) are *patient*: their mail stays in the retry queue without a
warning until a fixed deadline, because a primary server being down is the reason the mail is
here at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailmax.core.config import QueueSettings


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt.

    ``retry_at`` is the time of the next attempt, or ``None`` when delivery gives up (the
    recipient bounces with :attr:`diagnostic`). ``warn`` is true on the attempt that moves the
    recipient into the soft-error queue; ``until`` is when it will bounce at the latest.
    """

    retry_at: float | None
    stage: str
    warn: bool = False
    until: float | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """The retry settings of ``[queue]`` as one object."""

    retry_minutes: float = 15.0
    max_retries: int = 8
    soft_retry_hours: float = 4.0
    soft_max_resends: int = 30
    warning: bool = True

    @classmethod
    def from_settings(cls, queue: QueueSettings) -> Schedule:
        """The schedule configured in ``[queue]``."""
        return cls(
            retry_minutes=queue.retry_minutes,
            max_retries=queue.max_retries,
            soft_retry_hours=queue.soft_retry_hours,
            soft_max_resends=queue.soft_max_resends,
            warning=queue.soft_error_warning,
        )

    @property
    def retry_seconds(self) -> float:
        """Seconds between attempts in the retry queue."""
        return self.retry_minutes * 60

    @property
    def soft_seconds(self) -> float:
        """Seconds between re-sends in the soft-error queue."""
        return self.soft_retry_hours * 3600

    def stage(self, attempts: int) -> str:
        """Where a recipient with ``attempts`` failed attempts waits: ``retry`` or ``soft``."""
        return "retry" if attempts <= self.max_retries else "soft"

    def after_failure(
        self,
        attempts: int,
        now: float,
        last_error: str,
        *,
        patient_until: float | None = None,
    ) -> Decision:
        """The decision after attempt number ``attempts`` (1 = the first) failed temporarily.

        ``patient_until``: keep retrying every ``retry_minutes`` without a warning until then
        (backup MX), instead of the normal two stages.
        """
        if patient_until is not None:
            if now < patient_until:
                next_at = min(now + self.retry_seconds, patient_until)
                return Decision(next_at, "retry", until=patient_until)
            return Decision(None, "expired", diagnostic=_expired(attempts, last_error))
        if attempts <= self.max_retries:
            return Decision(now + self.retry_seconds, "retry", until=self._until(attempts, now))
        resends = attempts - self.max_retries
        if resends <= self.soft_max_resends:
            warn = self.warning and resends == 1
            return Decision(
                now + self.soft_seconds, "soft", warn=warn, until=self._until(attempts, now)
            )
        return Decision(None, "expired", diagnostic=_expired(attempts, last_error))

    def _until(self, attempts: int, now: float) -> float:
        """When a recipient that just failed attempt ``attempts`` will bounce at the latest."""
        if attempts <= self.max_retries:
            retries = self.max_retries + 1 - attempts
            return now + retries * self.retry_seconds + self.soft_max_resends * self.soft_seconds
        resends = self.soft_max_resends - (attempts - self.max_retries - 1)
        return now + resends * self.soft_seconds


def _expired(attempts: int, last_error: str) -> str:
    return f"451 4.4.7 Delivery time expired after {attempts} attempts; last error: {last_error}"
