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


def test_success_is_not_delayed_and_resets_the_pair() -> None:
    """A6: a right password answers at once and clears that IP's failures on the account."""
    clock = task.Clock()
    limiter = _limiter(clock)
    for _ in range(3):
        limiter.failed("192.0.2.9", "alice")
    user, elapsed = _run(
        limiter.attempt("192.0.2.9", "alice", _answer("ALICE", clock), clock), clock
    )
    assert user == "ALICE" and elapsed < 0.05
    for _ in range(4):  # block_after counts again from 0 (the IP's own count goes on)
        limiter.failed("192.0.2.9", "alice")
    assert limiter.blocked_for("192.0.2.9", "alice") == 0.0
    limiter.failed("192.0.2.9", "alice")
    assert limiter.blocked_for("192.0.2.9", "alice") == 600.0


def test_pair_block_never_locks_the_account_out_from_elsewhere() -> None:
    """A6: block_after failures of one account from one IP block that IP for that account
    only: the owner logs in from another address, delayed at most, never refused."""
    clock = task.Clock()
    limiter = _limiter(clock, account_delay_after=3)
    for _ in range(5):
        limiter.failed("203.0.113.5", "alice")
    checked: list[bool] = []

    def check() -> defer.Deferred:
        checked.append(True)
        return defer.succeed("ALICE")

    failure, elapsed = _run(limiter.attempt("203.0.113.5", "alice", check, clock), clock)
    assert isinstance(failure.value, LoginBlocked)
    assert "try again in 10 minute" in str(failure.value)
    assert checked == [] and elapsed == pytest.approx(1.0, abs=0.02)
    assert limiter.blocked_for("203.0.113.5", "bob") == 0.0  # other accounts from that IP
    assert limiter.blocked_for("198.51.100.7", "alice") == 0.0
    delay = limiter.account_delay("198.51.100.7", "alice")
    assert delay == 4.0  # 5 failures, delayed from the 3rd: 1, 2, 4
    user, elapsed = _run(limiter.attempt("198.51.100.7", "alice", check, clock), clock)
    assert user == "ALICE" and elapsed == pytest.approx(4.0, abs=0.02)
    for i in range(50):  # a distributed attack: the delay is capped, never a block
        limiter.failed(f"203.0.113.{100 + i}", "alice")
    assert limiter.blocked_for("198.51.100.8", "alice") == 0.0
    assert limiter.account_delay("198.51.100.8", "alice") == 8.0
    assert limiter.account_delay("198.51.100.7", "alice") == 0.0  # logged in from there
    clock.advance(601)
    assert limiter.blocked_for("203.0.113.5", "alice") == 0.0


def test_ip_block_after_spraying_many_accounts() -> None:
    """A6: ip_block_after failures from one IP over many accounts block that IP, except for
    accounts that logged in from it before."""
    clock = task.Clock()
    limiter = _limiter(clock, ip_block_after=4)
    limiter.succeeded("192.0.2.1", "carol")
    for i in range(4):
        limiter.failed("192.0.2.1", f"user{i}")
    assert limiter.blocked_for("192.0.2.1", "someone") == pytest.approx(600.0)
    assert limiter.blocked_for("192.0.2.1", "carol") == 0.0
    assert limiter.blocked_for("192.0.2.2", "someone") == 0.0


def test_unknown_and_existing_accounts_are_treated_alike() -> None:
    """A6: the limiter never knows who exists: a battery of failures on an unknown name and
    on an existing one gets the same delays and the same block."""

    def battery(account: str, check_seconds: float) -> list:
        clock = task.Clock()
        limiter = _limiter(clock, account_delay_after=2)
        limiter.succeeded("198.51.100.1", "alice")  # alice exists and logged in before
        seen = []
        for _ in range(6):
            result, elapsed = _run(
                limiter.attempt("192.0.2.1", account, _answer(None, clock, check_seconds), clock),
                clock,
            )
            kind = type(result.value).__name__ if hasattr(result, "value") else result
            seen.append((kind, round(elapsed, 1)))
        return seen

    assert battery("nobody@example.test", 0.0) == battery("alice", 0.2)


def test_exempt_networks_are_neither_delayed_nor_blocked() -> None:
    """A6: a client in an exempt network gets its answer at once and never blocks anyone."""
    clock = task.Clock()
    limiter = _limiter(clock, exempt=["10.0.0.0/8"])
    for _ in range(20):
        result, elapsed = _run(
            limiter.attempt("10.1.2.3", "alice", _answer(None, clock), clock), clock
        )
        assert result is None and elapsed < 0.05
    assert limiter.current() == []
    assert limiter.blocked_for("192.0.2.1", "alice") == 0.0


def test_admin_lists_and_forgets_blocks() -> None:
    """A6: the admin sees every block and account delay and can lift them by IP or account."""
    clock = task.Clock()
    limiter = _limiter(clock, account_delay_after=3)
    for _ in range(5):
        limiter.failed("203.0.113.5", "alice")
    rows = limiter.current()
    assert [(r["kind"], r["ip"], r["account"]) for r in rows] == [
        ("account", "", "alice"),
        ("pair", "203.0.113.5", "alice"),
    ]
    assert rows[0]["delay_seconds"] == 4.0 and rows[1]["blocked_seconds"] == 600.0
    assert limiter.unblock("203.0.113.5") == 2  # the pair and the IP's count
    assert limiter.blocked_for("203.0.113.5", "alice") == 0.0
    assert limiter.account_delay("192.0.2.1", "alice") == 4.0
    assert limiter.unblock("ALICE") == 1
    assert limiter.current() == [] and limiter.unblock("alice") == 0


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
        failure_delay=0.1,
        max_failure_delay=0.4,
        block_after=3,
        ip_block_after=7,
        account_delay_after=4,
        block_minutes=2,
        window_minutes=5,
        exempt_networks=["10.0.0.0/8"],
    )
    limiter = AuthLimiter.from_settings(SimpleNamespace(auth=auth))
    assert (limiter.failure_delay, limiter.block_after, limiter.block_seconds) == (0.1, 3, 120.0)
    assert (limiter.ip_block_after, limiter.account_delay_after) == (7, 4)
    assert limiter.is_exempt("10.9.8.7") and not limiter.is_exempt("192.0.2.1")
    assert AuthLimiter.from_settings(SimpleNamespace()).failure_delay == 1.0
    for _ in range(3):
        limiter.failed("192.0.2.1", "alice")
    assert limiter.blocked_for("192.0.2.1", "alice") > 0
    limiter.reconfigure(SimpleNamespace(auth=SimpleNamespace(**{**vars(auth), "block_after": 9})))
    assert limiter.block_after == 9 and limiter.current()  # the counts stay
    with pytest.raises(ValueError):
        AuthLimiter(failure_delay=5, max_failure_delay=1)
    assert AuthLimiter.account_key(" Alice ", "Example.Test") == "alice@example.test"
    assert AuthLimiter.account_key("bob@x.test", "example.test") == "bob@x.test"
