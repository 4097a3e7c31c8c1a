"""The retry schedule (Q2, Q3): retry queue, soft-error queue with one warning, then expiry."""

from __future__ import annotations

from mailmax.core import config
from mailmax.core.outbound.retry import Schedule


def test_defaults_come_from_the_queue_section() -> None:
    """Q2/Q3: the schedule is the [queue] settings; the defaults retry for about five days."""
    schedule = Schedule.from_settings(config.parse({}).queue)
    assert (schedule.retry_minutes, schedule.max_retries) == (15.0, 8)
    assert (schedule.soft_retry_hours, schedule.soft_max_resends) == (4.0, 30)
    first = schedule.after_failure(1, 0.0, "451 4.3.0 x")
    assert first.until is not None and 4 * 86400 < first.until < 6 * 86400


def test_retry_queue_then_soft_error_queue_then_expiry() -> None:
    """Q2: max_retries retries every retry_minutes; Q3: then re-sends every soft_retry_hours,
    with a warning only on entering; after the re-send limit the recipient bounces (4.4.7)."""
    schedule = Schedule(retry_minutes=10, max_retries=2, soft_retry_hours=1, soft_max_resends=2)
    decisions = [schedule.after_failure(n, 1000.0, "451 4.2.0 busy") for n in range(1, 6)]
    assert [d.stage for d in decisions] == ["retry", "retry", "soft", "soft", "expired"]
    assert [d.retry_at for d in decisions[:4]] == [1600.0, 1600.0, 4600.0, 4600.0]
    assert [d.warn for d in decisions] == [False, False, True, False, False]
    assert decisions[4].retry_at is None
    assert decisions[4].diagnostic == (
        "451 4.4.7 Delivery time expired after 5 attempts; last error: 451 4.2.0 busy"
    )
    # "until" is the same final deadline seen from every attempt made on time
    assert decisions[0].until == 1000 + 2 * 600 + 2 * 3600
    assert decisions[2].until == 1000 + 2 * 3600


def test_no_soft_error_queue_and_no_warning_when_switched_off() -> None:
    """Q3: soft_max_resends = 0 bounces right after the retries; warnings can be turned off."""
    schedule = Schedule(retry_minutes=1, max_retries=1, soft_max_resends=0)
    assert schedule.after_failure(2, 0.0, "x").stage == "expired"
    quiet = Schedule(max_retries=0, soft_max_resends=3, warning=False)
    assert not quiet.after_failure(1, 0.0, "x").warn


def test_patient_destinations_retry_without_warning_until_their_deadline() -> None:
    """Q10: backup MX mail keeps retrying every retry_minutes, never warned, until a fixed
    deadline; only then does it bounce."""
    schedule = Schedule(retry_minutes=10, max_retries=0, soft_max_resends=0)
    decision = schedule.after_failure(50, 1000.0, "x", patient_until=5000.0)
    assert (decision.stage, decision.retry_at, decision.warn) == ("retry", 1600.0, False)
    assert schedule.after_failure(51, 4900.0, "x", patient_until=5000.0).retry_at == 5000.0
    assert schedule.after_failure(52, 5000.0, "x", patient_until=5000.0).stage == "expired"
