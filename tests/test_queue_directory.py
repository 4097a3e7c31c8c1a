"""The queue runner against the real SQL directory (SQLite file): users, limits, aliases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.spool.envelope import SpoolRecipient
from tests.test_queue_support import QueueHarness, parse_dsn
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the spool and the runner."""
    yield from running_reactor()


@pytest.fixture
def queue(tmp_path: Path, reactor_thread: ReactorThread) -> Iterator[QueueHarness]:
    """A running spool and queue runner over a SQLite directory with alice, bob and carol."""
    directory = SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}", base_dir=tmp_path)
    # A temporary failure (a full mailbox) bounces after its second attempt.
    harness = QueueHarness(
        tmp_path, reactor_thread, directory=directory, max_retries=1, soft_max_resends=0
    )
    harness.start()
    yield harness
    harness.stop()
    directory.close()


def test_delivery_into_the_directorys_maildir(queue: QueueHarness) -> None:
    """S4: the message lands in <domain mail dir>/<user>/new as the directory says."""
    queue.submit(["bob@example.com"])
    queue.wait_mail("bob@example.com")
    assert len(list((queue.tmp_path / "mail" / "example.com" / "bob" / "new").iterdir())) == 1
    queue.wait_queue_empty()


def test_user_disk_limit_from_the_directory_bounces(queue: QueueHarness) -> None:
    """A5, A14: a user's disk limit in the directory is enforced; over it the copy waits, and
    the sender gets a DSN (mailbox full) when its retries are used up."""
    queue.directory.edit_user("bob@example.com", disk_limit_mb=1)
    queue.submit(["bob@example.com"], body=b"x" * 1_100_000 + b"\r\n")
    (dsn,) = queue.wait_mail("alice@example.com")
    report = parse_dsn(dsn)[1][0]
    assert report["Status"] == "4.4.7" and "452 4.2.2" in report["Diagnostic-Code"]
    assert queue.messages("bob@example.com") == []
    queue.wait_queue_empty()


def test_user_deleted_after_acceptance_bounces(queue: QueueHarness) -> None:
    """A5: mail accepted for a user who is deleted before delivery is bounced (5.1.1)."""
    queue.rt.call(queue.runner.stopService)
    queue_id = queue.submit(["carol@example.com"])
    queue.directory.delete_user("carol@example.com")
    queue.runner = queue.new_runner()
    queue.rt.call(queue.runner.startService)
    (dsn,) = queue.wait_mail("alice@example.com")
    _, (carol,) = parse_dsn(dsn)
    assert carol["Status"] == "5.1.1" and queue_id in dsn.decode()
    queue.wait_queue_empty()


def test_alias_recipient_is_delivered_to_its_targets(queue: QueueHarness) -> None:
    """A9 at delivery: an address without a mailbox that is an alias goes to its targets."""
    queue.directory.add_alias("team@example.com", ["bob@example.com", "carol@example.com"])
    envelope_recipient = SpoolRecipient("team@example.com")
    queue.recipient = lambda address: envelope_recipient  # type: ignore[method-assign]
    queue.submit(["team@example.com"])
    queue.wait_mail("bob@example.com")
    queue.wait_mail("carol@example.com")
    queue.wait_queue_empty()


def test_expansion_past_the_recipient_cap_bounces_instead_of_dropping(
    queue: QueueHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Targets an expansion cannot add (the envelope is full) are reported to the sender."""
    from mailmax.core.queue import results

    monkeypatch.setattr(results, "MAX_RECIPIENTS", 2)
    queue.directory.add_user("dave@example.com")
    queue.directory.add_alias("team@example.com", ["bob", "carol", "dave"])
    envelope_recipient = SpoolRecipient("team@example.com")
    queue.recipient = lambda address: envelope_recipient  # type: ignore[method-assign]
    queue.submit(["team@example.com"])
    (dsn,) = queue.wait_mail("alice@example.com")
    _, (team,) = parse_dsn(dsn)
    assert team["Status"] == "5.5.3"
    assert b"not delivered to 2 of its targets" in dsn
    queue.wait_mail("bob@example.com")
    queue.wait_queue_empty()
