"""Failed-login throttling: growing delays, temporary blocks, equal timing (A6, S2, S3, P5)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer, task

from mailmax.core.authlimit import AuthLimiter, LoginBlocked


def _limiter(clock: task.Clock, **kw: float) -> AuthLimiter:
    options = dict(
        failure_delay=1.0,
        max_failure_delay=8.0,
        block_after=5,
        block_seconds=600.0,
        window_seconds=900.0,
    )
    options.update(kw)
    return AuthLimiter(clock=clock.seconds, **options)  # type: ignore[arg-type]


def _answer(value: object, clock: task.Clock, after: float = 0.0):
    def check() -> defer.Deferred:
        return task.deferLater(clock, after, lambda: value)

    return check


def _run(d: defer.Deferred, clock: task.Clock, step: float = 0.01, limit: float = 120.0):
    results: list = []
    d.addBoth(results.append)
    elapsed = 0.0
    while not results and elapsed < limit:
        clock.advance(step)
        elapsed += step
    assert results, "the attempt never finished"
    return results[0], elapsed


def test_delays_grow_and_are_capped() -> None:
    """A6: each failure of an IP or account doubles the delay, up to the maximum."""
    clock = task.Clock()
    limiter = _limiter(clock, block_after=100)
    delays = [limiter.failed("192.0.2.1", "alice@example.test") for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_failure_reply_time_does_not_depend_on_the_check() -> None:
    """A6: unknown user (fast check) and wrong password (slow hash) answer at the same time."""
    clock = task.Clock()
    limiter = _limiter(clock)
    fast, t_fast = _run(limiter.attempt("192.0.2.1", "nobody", _answer(None, clock), clock), clock)
    limiter = _limiter(clock)
    slow, t_slow = _run(
        limiter.attempt("192.0.2.1", "alice", _answer(None, clock, 0.3), clock), clock
    )
    assert fast is None and slow is None
    assert t_fast == pytest.approx(1.0, abs=0.02)
    assert t_slow == pytest.approx(1.0, abs=0.02)


def test_success_is_not_delayed_and_resets_the_account() -> None:
    """A6: a right password answers at once and clears the account's failures."""
    clock = task.Clock()
    limiter = _limiter(clock)
    for _ in range(3):
        limiter.failed("192.0.2.1", "alice")
    user, elapsed = _run(
        limiter.attempt("192.0.2.9", "alice", _answer("ALICE", clock), clock), clock
    )
    assert user == "ALICE" and elapsed < 0.05
    assert limiter.failed("192.0.2.9", "alice") == 1.0


def test_block_after_too_many_failures() -> None:
    """A6: after block_after failures the IP is blocked; the password is not even checked."""
    clock = task.Clock()
    limiter = _limiter(clock)
    for i in range(5):
        limiter.failed("192.0.2.1", f"user{i}")
    assert limiter.blocked_for("192.0.2.1", "someone") == pytest.approx(600.0)
    checked: list[bool] = []

    def check() -> defer.Deferred:
        checked.append(True)
        return defer.succeed("USER")

    failure, elapsed = _run(limiter.attempt("192.0.2.1", "alice", check, clock), clock)
    assert isinstance(failure.value, LoginBlocked)
    assert "try again in 10 minute" in str(failure.value)
    assert checked == [] and elapsed == pytest.approx(1.0, abs=0.02)
    assert limiter.blocked_for("192.0.2.2", "alice") == 0.0  # another IP may still try
    clock.advance(601)
    assert limiter.blocked_for("192.0.2.1", "alice") == 0.0


def test_account_block_spares_a_known_client() -> None:
    """A6: an attack on an account name blocks it, except for the owner's own client."""
    clock = task.Clock()
    limiter = _limiter(clock)
    limiter.succeeded("198.51.100.7", "alice")
    for i in range(5):
        limiter.failed(f"203.0.113.{i}", "alice")
    assert limiter.blocked_for("203.0.113.99", "alice") > 0
    assert limiter.blocked_for("198.51.100.7", "alice") == 0.0


def test_failures_expire_after_the_window() -> None:
    """A6: failures older than the window no longer count."""
    clock = task.Clock()
    limiter = _limiter(clock)
    for _ in range(4):
        limiter.failed("192.0.2.1", "alice")
    clock.advance(901)
    assert limiter.failed("192.0.2.1", "alice") == 1.0


def test_settings_and_bad_values() -> None:
    """A6: limits come from an [auth] section when there is one; nonsense is refused."""
    auth = SimpleNamespace(
        failure_delay=0.1, max_failure_delay=0.4, block_after=3, block_minutes=2, window_minutes=5
    )
    limiter = AuthLimiter.from_settings(SimpleNamespace(auth=auth))
    assert (limiter.failure_delay, limiter.block_after, limiter.block_seconds) == (0.1, 3, 120.0)
    assert AuthLimiter.from_settings(SimpleNamespace()).failure_delay == 1.0
    with pytest.raises(ValueError):
        AuthLimiter(failure_delay=5, max_failure_delay=1)
    assert AuthLimiter.account_key(" Alice ", "Example.Test") == "alice@example.test"
    assert AuthLimiter.account_key("bob@x.test", "example.test") == "bob@x.test"
