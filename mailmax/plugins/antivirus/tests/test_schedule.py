"""When definition updates are due, on a fixed clock."""

from __future__ import annotations

import calendar

from mailmax.plugins.antivirus.updating import update_due

#: 2026-12-07 10:00:00 UTC.
T0 = float(calendar.timegm((2026, 12, 7, 10, 0, 0)))
HOUR = 3600.0


def test_every_n_hours_counts_from_the_last_update_or_the_start() -> None:
    assert not update_due(T0 + 5 * HOUR, None, T0, 6, "")
    assert update_due(T0 + 6 * HOUR, None, T0, 6, "")
    assert not update_due(T0 + 8 * HOUR, T0 + 6 * HOUR, T0, 6, "")
    assert update_due(T0 + 12 * HOUR, T0 + 6 * HOUR, T0, 6, "")


def test_daily_at_a_time_runs_once_after_that_time() -> None:
    assert not update_due(T0 + HOUR, None, T0, 0, "03:30")  # 03:30 passed before the start
    assert update_due(T0 + 18 * HOUR, None, T0, 0, "03:30")  # next day 04:00
    assert not update_due(T0 + 18 * HOUR, T0 + 17.6 * HOUR, T0, 0, "03:30")  # ran at 03:36
    assert update_due(T0 + HOUR, None, T0, 0, "10:30")


def test_no_schedule_is_never_due() -> None:
    assert not update_due(T0 + 100 * HOUR, None, T0, 0, "")
