"""The rules on the server's code path with a fake clock, on SQLite and PostgreSQL: changes
hold within refresh_seconds without a reload, date and time conditions read the host's clock in
the configured time zone, and the lists keep their order through moves and deletes."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from twisted.internet import task

from mailmax.plugin import DeliveryDecision
from mailmax.plugins import rules
from mailmax.plugins.rules import store
from mailmax.plugins.rules.model import make_rule
from mailmax.testing import PluginHarness, make_envelope

CAROL = "carol@example.test"


@pytest.fixture
def harness(db_url: str, tmp_path: Path):
    """The rules plugin on a directory with example.test and carol, and a fake clock."""
    clock = task.Clock()
    clock.advance(datetime.datetime(2027, 3, 3, 8, 30, tzinfo=datetime.UTC).timestamp())
    harness = PluginHarness(
        rules,
        {"refresh_seconds": 2, "time_zone": "Europe/Paris"},
        database_url=db_url,
        data_dir=tmp_path,
        clock=clock,
    )
    harness.directory.add_domain("example.test", str(tmp_path / "mail"))
    harness.directory.add_user(CAROL, "carolsecret")
    yield harness
    harness.close()


def save(harness: PluginHarness, scope: str, value: str, name: str, ifs, thens, **kw) -> None:
    rule = make_rule(scope, value, name, ifs, thens, **kw)
    harness.result(harness.context.transaction(store.save, rule, write=True))


def folder(harness: PluginHarness, tmp_path: Path, subject: str = "hello") -> str:
    path = tmp_path / "message.eml"
    path.write_bytes(f"From: joe@sender.test\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    answer = harness.run(
        "mailmax_deliver",
        mailbox=CAROL,
        envelope=make_envelope("joe@sender.test", [CAROL]),
        message_path=str(path),
    )
    if answer is None:
        return "INBOX"
    assert isinstance(answer, DeliveryDecision)
    return answer.folder if answer.kind == "folder" else answer.kind


def test_a_change_holds_within_refresh_seconds_without_a_reload(harness, tmp_path) -> None:
    """R1: the server's copy of the rules is read again once refresh_seconds have passed."""
    assert folder(harness, tmp_path) == "INBOX"
    save(harness, "user", CAROL, "a", ["any"], ["folder A"])
    assert folder(harness, tmp_path) == "INBOX"  # the empty list read a moment ago
    harness.clock.advance(2)
    assert folder(harness, tmp_path) == "A"
    harness.result(
        harness.context.transaction(store.set_enabled, "user", CAROL, "a", False, write=True)
    )
    harness.clock.advance(1.9)
    assert folder(harness, tmp_path) == "A"
    harness.clock.advance(0.1)
    assert folder(harness, tmp_path) == "INBOX"


def test_date_weekday_and_time_read_the_host_clock_in_the_time_zone(harness, tmp_path) -> None:
    """R2: 08:30 UTC on Wednesday 2027-03-03 is 09:30 in Paris: office hours, a weekday."""
    save(
        harness,
        "system",
        "",
        "office",
        ["time between 09:00 17:00", "weekday between 2 6", "date on 2027-03-03"],
        ["folder Office"],
    )
    save(harness, "domain", "example.test", "late", ["time after 18:00"], ["folder Late"])
    harness.clock.advance(2)
    assert folder(harness, tmp_path) == "Office"
    harness.clock.advance(9 * 3600)  # 18:30 in Paris
    assert folder(harness, tmp_path) == "Late"
    harness.clock.advance(3 * 86400)  # Saturday 2027-03-06, 18:30
    assert folder(harness, tmp_path) == "Late"
    harness.clock.advance(-8 * 3600)  # Saturday 10:30: not a weekday 2..6
    assert folder(harness, tmp_path) == "INBOX"


def test_the_body_is_read_only_when_a_condition_needs_it(harness, tmp_path) -> None:
    """Header and size conditions read the header only; a body condition parses the body."""
    save(harness, "user", CAROL, "head", ["header Subject contains x", "size > 1"], ["discard"])
    harness.clock.advance(2)
    folder(harness, tmp_path, "hello")
    assert "rules.bodies_read" not in harness.metrics()["counters"]
    save(harness, "user", CAROL, "body", ["body contains hi"], ["folder Body"])
    harness.clock.advance(2)
    assert folder(harness, tmp_path, "hello") == "Body"
    assert harness.metrics()["counters"]["rules.bodies_read"] == 1


def test_lists_keep_their_order_through_moves_and_deletes(harness) -> None:
    """R1: positions 1..n; a rule added at a position, moved, or deleted renumbers the rest."""
    for name in ("a", "b", "c"):
        save(harness, "user", CAROL, name, ["any"], [f"folder {name.upper()}"])
    save(harness, "user", CAROL, "first", ["any"], ["folder F"], position=1)

    def names() -> list[tuple[int, str]]:
        found = harness.result(harness.context.transaction(store.listing, "user", CAROL))
        return [(rule.position, rule.name) for rule in found]

    assert names() == [(1, "first"), (2, "a"), (3, "b"), (4, "c")]
    harness.result(harness.context.transaction(store.move, "user", CAROL, "c", 2, write=True))
    assert names() == [(1, "first"), (2, "c"), (3, "a"), (4, "b")]
    harness.result(harness.context.transaction(store.delete, "user", CAROL, "c", write=True))
    assert names() == [(1, "first"), (2, "a"), (3, "b")]
    with pytest.raises(ValueError, match="already has a rule called 'a'"):
        save(harness, "user", CAROL, "a", ["any"], ["discard"])
