"""Daily sending limits on a fake clock, on the server's code path: the counts roll over at
00:00 UTC and are kept in the directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mailmax.plugins.limits as limits
from mailmax.plugin import Action, Verdict
from mailmax.testing import PluginHarness, make_envelope, make_session

ALICE = "alice@example.test"
#: 2026-12-07 23:00 UTC.
LATE_EVENING = 1796684400.0


def start(tmp_path: Path, **settings: object) -> PluginHarness:
    harness = PluginHarness(
        limits, settings, database_url=f"sqlite:///{tmp_path / 'd.db'}", data_dir=tmp_path
    )
    harness.clock.advance(LATE_EVENING)
    directory = harness.directory
    directory.add_domain("example.test", str(tmp_path / "mail"), session_send_messages=3)
    directory.add_user(
        ALICE, "pw", daily_send_messages=2, daily_send_mb=1, daily_limits_enabled=True
    )
    directory.add_user("bob@example.test", "pw")
    return harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[PluginHarness]:
    started = start(tmp_path)
    yield started
    started.close()


def mail_from(harness: PluginHarness, user: str, size: int = 0, messages: int = 0) -> Verdict:
    session = make_session(auth_user=user, service="submission", messages=messages)
    envelope = make_envelope(user)
    envelope.size_hint = size
    return harness.result(
        harness.run("mailmax_mail_from", session=session, envelope=envelope, sender=user)
    )


def sent(harness: PluginHarness, user: str, size: int) -> None:
    session = make_session(auth_user=user, service="submission")
    harness.result(
        harness.run(
            "mailmax_message_accepted", session=session, envelope=make_envelope(user), size=size
        )
    )


def test_daily_message_limit_holds_until_midnight_utc(harness: PluginHarness) -> None:
    for _ in range(2):
        assert mail_from(harness, ALICE).action is Action.CONTINUE
        sent(harness, ALICE, 1000)
    refused = mail_from(harness, ALICE)
    assert (refused.action, refused.code, refused.status) == (Action.TEMPFAIL, 452, "4.7.0")
    assert refused.text == (
        "Daily sending limit of 2 messages for alice@example.test reached,"
        " try again after 00:00 UTC"
    )
    assert mail_from(harness, "bob@example.test").action is Action.CONTINUE  # no limits
    harness.clock.advance(3599)  # 23:59:59
    assert mail_from(harness, ALICE).action is Action.TEMPFAIL
    harness.clock.advance(1)  # the next day
    assert mail_from(harness, ALICE).action is Action.CONTINUE


def test_daily_megabytes_count_the_announced_size(harness: PluginHarness) -> None:
    mb = 1024 * 1024
    too_big = mail_from(harness, ALICE, size=mb + 1)
    assert (too_big.code, too_big.status) == (552, "5.3.4")
    assert "larger than the daily sending limit of 1 MB for alice@example.test" in too_big.text
    sent(harness, ALICE, mb - 100)
    over = mail_from(harness, ALICE, size=200)
    assert (over.code, over.text) == (
        452,
        "Daily sending limit of 1 MB for alice@example.test reached, try again after 00:00 UTC",
    )
    assert mail_from(harness, ALICE, size=50).action is Action.CONTINUE


def test_real_size_is_checked_at_the_end_of_data_until_midnight(harness: PluginHarness) -> None:
    """A message sent without SIZE= is measured before it is accepted: over what is left for
    the day it is refused as the SIZE= check refuses it, and the next day it fits again."""
    mb = 1024 * 1024
    sent(harness, ALICE, mb - 100)
    session = make_session(auth_user=ALICE, service="submission")
    envelope = make_envelope(ALICE, ["bob@example.test", "carol@remote.test"])
    verdict = harness.result(
        harness.run("mailmax_mail_from", session=session, envelope=envelope, sender=ALICE)
    )
    assert verdict.action is Action.CONTINUE  # no SIZE=: nothing to refuse yet
    refused = harness.result(harness.data(envelope, b"x" * 200, session)).refusal
    assert (refused.action, refused.code, refused.status, refused.text) == (
        Action.TEMPFAIL,
        452,
        "4.7.0",
        "Daily sending limit of 1 MB for alice@example.test reached, try again after 00:00 UTC",
    )
    assert harness.result(harness.data(envelope, b"x" * 50, session)).refusal is None
    harness.clock.advance(3600)  # the next day: the whole megabyte is left
    assert harness.result(harness.data(envelope, b"x" * 200, session)).refusal is None
    too_big = harness.result(harness.data(envelope, b"x" * (mb + 1), session)).refusal
    assert (too_big.code, too_big.status) == (552, "5.3.4")
    assert (
        too_big.text == "Message larger than the daily sending limit of 1 MB for alice@example.test"
    )
    bob = make_envelope("bob@example.test", ["alice@example.test"])  # no limits: nothing noted
    bob_session = make_session(auth_user="bob@example.test", service="submission")
    harness.result(
        harness.run("mailmax_mail_from", session=bob_session, envelope=bob, sender=bob.sender)
    )
    assert harness.result(harness.data(bob, b"x" * (mb + 1), bob_session)).refusal is None


def test_domain_session_limit_and_switching_daily_limits_off(tmp_path: Path) -> None:
    harness = start(tmp_path, daily_limits=False)
    try:
        for _ in range(3):
            sent(harness, ALICE, 10)
        assert mail_from(harness, ALICE, messages=2).action is Action.CONTINUE  # daily: off
        refused = mail_from(harness, ALICE, messages=3)
        assert (refused.code, refused.text) == (
            452,
            "Session limit of 3 messages for users of example.test reached, reconnect to send more",
        )
        anonymous = make_session(messages=50)
        verdict = harness.result(
            harness.run("mailmax_mail_from", session=anonymous, envelope=make_envelope(), sender="")
        )
        assert verdict.action is Action.CONTINUE  # only authenticated sessions
        assert harness.result(harness.kv.items("day:")) == {}  # nothing counted while off
    finally:
        harness.close()
