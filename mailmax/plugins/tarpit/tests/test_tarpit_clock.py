"""The tarpit's delays, cut-off and blocks on a fake clock, on the server's code path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import defer

import mailmax.plugins.tarpit as tarpit
from mailmax.plugin import Action, Session, Verdict
from mailmax.testing import PluginHarness, make_envelope, make_session

SETTINGS = {"trigger": 2, "delay": 2.0, "growth": 2.0, "max_delay": 5.0, "disconnect_after": 5}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[PluginHarness]:
    started = PluginHarness(
        tarpit, {**SETTINGS, "block_minutes": 10}, database_url=f"sqlite:///{tmp_path / 'd.db'}"
    )
    yield started
    started.close()


def refuse(harness: PluginHarness, session: Session) -> object:
    """One refused recipient: the hook's answer (a Deferred while the reply is held)."""
    return harness.run(
        "mailmax_rcpt_refused",
        session=session,
        envelope=make_envelope("x@spam.test"),
        address="nobody@example.test",
        code=550,
        status="5.1.1",
    )


def connect(harness: PluginHarness, ip: str) -> Verdict:
    """The connect hook's verdict for a new client at ``ip``."""
    return harness.result(harness.run("mailmax_connect", session=make_session(peer_ip=ip)))


def held_for(harness: PluginHarness, answer: object) -> float:
    """How long (on the fake clock) the reply was held."""
    waited = 0.0
    while isinstance(answer, defer.Deferred) and not answer.called:
        harness.clock.advance(0.5)
        waited += 0.5
    return waited


def test_replies_slow_down_after_the_trigger_growing_up_to_the_cap(harness: PluginHarness) -> None:
    session = make_session(peer_ip="192.0.2.7")
    assert held_for(harness, refuse(harness, session)) == 0  # 1 refused: not yet
    assert held_for(harness, refuse(harness, session)) == 2.0  # trigger reached
    mail = harness.run("mailmax_mail_from", session=session, sender="x@spam.test")
    assert held_for(harness, mail) == 4.0  # every further reply waits, longer each time
    assert held_for(harness, refuse(harness, session)) == 5.0  # capped
    other = make_session(peer_ip="192.0.2.8")
    assert held_for(harness, harness.run("mailmax_helo", session=other, helo="x")) == 0


def test_cut_off_client_is_blocked_until_the_block_ends(harness: PluginHarness) -> None:
    session = make_session(peer_ip="192.0.2.7")
    answers = [refuse(harness, session) for _ in range(4)]
    harness.clock.advance(60)
    assert all(a.called for a in answers if isinstance(a, defer.Deferred))
    verdict = harness.result(refuse(harness, session))
    assert verdict.action is Action.DISCONNECT and verdict.code == 421
    block = harness.result(harness.kv.get("block:192.0.2.7"))
    assert block["cause"] == "tarpit" and block["until"] - block["since"] == 600

    harness.clock.advance(90)
    again = harness.result(
        harness.run("mailmax_connect", session=make_session(peer_ip="192.0.2.7"))
    )
    assert (again.action, again.code) == (Action.TEMPFAIL, 421)
    assert "blocked for 9 more minute(s)" in again.text
    other = harness.result(
        harness.run("mailmax_connect", session=make_session(peer_ip="192.0.2.9"))
    )
    assert other.action is Action.CONTINUE
    harness.clock.advance(510)
    later = harness.result(
        harness.run("mailmax_connect", session=make_session(peer_ip="192.0.2.7"))
    )
    assert later.action is Action.CONTINUE


def test_authenticated_sessions_are_never_tarpitted(harness: PluginHarness) -> None:
    session = make_session(peer_ip="192.0.2.7", auth_user="alice@example.test")
    for _ in range(10):
        answer = refuse(harness, session)
        assert held_for(harness, answer) == 0
        assert harness.result(answer).action is Action.CONTINUE
    assert harness.result(harness.kv.get("block:192.0.2.7")) is None


def test_disconnect_must_not_come_before_the_trigger() -> None:
    with pytest.raises(ValueError, match="must not be below trigger"):
        PluginHarness(tarpit, {"trigger": 5, "disconnect_after": 3})
