"""The queue runner's local delivery (S4, Q1, Q4, Q5, A5): into Maildirs, retries, bounces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.directory.api import AccountType
from mailmax.core.hooks import PluginSet
from mailmax.core.store import maildir
from mailmax.core.verdicts import accept, reject, tempfail
from tests.test_queue_support import QueueHarness, parse_dsn, plugin, running
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the spool and the runner."""
    yield from running_reactor()


@pytest.fixture
def queue(tmp_path: Path, reactor_thread: ReactorThread) -> Iterator[QueueHarness]:
    """A running spool and queue runner with alice, bob and carol at example.com."""
    harness = running(reactor_thread, tmp_path)
    yield harness
    harness.stop()


def test_message_is_delivered_to_each_inbox_and_leaves_the_queue(queue: QueueHarness) -> None:
    """S4: each local recipient gets the exact spooled message in INBOX/new; the queue empties;
    one log line per delivery names the queue id, recipient, folder and result."""
    queue_id = queue.submit(["bob@example.com", "carol@example.com"], body=b"Hi both\r\n")
    (bob,) = queue.wait_mail("bob@example.com")
    (carol,) = queue.wait_mail("carol@example.com")
    trace = b"Return-Path: <alice@example.com>\r\nDelivered-To: %s\r\n"
    assert bob.startswith(trace % b"bob@example.com")
    assert carol.startswith(trace % b"carol@example.com")
    assert bob.split(b"\r\n", 2)[2] == carol.split(b"\r\n", 2)[2]
    assert bob.split(b"\r\n", 2)[2].startswith(b"Received: from hop0.example.org")
    assert bob.endswith(b"Hi both\r\n")

    queue.wait_queue_empty()
    queue.wait_for(lambda: not queue.spool.message_path(queue_id).exists(), "the file removed")
    names = os.listdir(queue.maildir("bob@example.com") / "new")
    assert names[0].startswith(f"{queue_id}-0.")
    lines = queue.wait_for(
        lambda: [line for line in queue.log_lines() if queue_id in line and "result=" in line],
        "delivery log lines",
    )
    assert f"delivery {queue_id} to=bob@example.com folder=INBOX result=delivered" in lines
    assert f"delivery {queue_id} to=carol@example.com folder=INBOX result=delivered" in lines


def test_unknown_user_bounces_with_an_rfc3464_report(queue: QueueHarness) -> None:
    """Q4: a recipient whose user no longer exists gets the sender a DSN from the null sender;
    the other recipient still gets the message."""
    queue.submit(["bob@example.com", "gone@example.com"])
    queue.wait_mail("bob@example.com")
    (dsn,) = queue.wait_mail("alice@example.com")
    msg, recipients = parse_dsn(dsn)
    assert msg["To"] == "alice@example.com"
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822; gone@example.com"]
    assert recipients[0]["Action"] == "failed" and recipients[0]["Status"] == "5.1.1"
    queue.wait_queue_empty()


def test_over_disk_limit_waits_then_bounces_when_its_time_ends(
    tmp_path: Path, reactor_thread: ReactorThread
) -> None:
    """A5, A14: a user over the disk limit (user limit, else the domain default) is a temporary
    failure: the copy is retried, and the sender gets a DSN only when its retries are used up."""
    queue = running(reactor_thread, tmp_path, max_retries=1, soft_max_resends=0)
    try:
        queue.directory.add_user("bob@example.com", disk_limit_mb=1)
        big = b"x" * 700_000 + b"\r\n"
        queue.submit(["bob@example.com"], body=big)
        queue.wait_mail("bob@example.com")
        queue.wait_queue_empty()
        queue.submit(["bob@example.com"], body=big)
        (dsn,) = queue.wait_mail("alice@example.com")
        _, (bob,) = parse_dsn(dsn)
        assert bob["Status"] == "4.4.7"
        assert "after 2 attempts" in bob["Diagnostic-Code"]
        assert "452 4.2.2" in bob["Diagnostic-Code"] and "mailbox full" in bob["Diagnostic-Code"]
        assert len(queue.messages("bob@example.com")) == 1
        # the domain's default box size applies when the user has none
        queue.directory.add_domain("example.com", default_box_mb=1)
        queue.directory.add_user("carol@example.com")
        queue.submit(["carol@example.com"], body=big * 2)
        assert len(queue.wait_mail("alice@example.com", 2)) == 2
        assert queue.messages("carol@example.com") == []
        queue.wait_queue_empty()
    finally:
        queue.stop()


def test_never_a_bounce_to_the_null_sender(queue: QueueHarness) -> None:
    """Q4: a failing message from the null sender is dropped (logged), never bounced."""
    queue_id = queue.submit(["gone@example.com"], sender="")
    queue.wait_queue_empty()
    assert queue.wait_for(
        lambda: any(queue_id in line and "null sender" in line for line in queue.log_lines()),
        "the log line about the dropped bounce",
    )
    assert queue.messages("alice@example.com") == []
    assert queue.spool.pending_ids() == []


def test_write_failure_is_retried_not_dropped(queue: QueueHarness) -> None:
    """S4: a real write failure (bob's Maildir tmp/ is a file) defers delivery and it is
    retried; once the problem is fixed the message arrives exactly once."""
    root = queue.maildir("bob@example.com")
    maildir.ensure_maildir(root)
    (root / "tmp").rmdir()
    (root / "tmp").write_text("in the way")
    queue_id = queue.submit(["bob@example.com"])
    envelope = queue.wait_for(
        lambda: (e := queue.spool.load(queue_id)).recipients[0].attempts >= 1 and e,
        "a deferred attempt",
    )
    bob = envelope.recipients[0]
    assert bob.state == "deferred" and bob.last_error.startswith("451 4.3.")
    assert queue.messages("alice@example.com") == []
    (root / "tmp").unlink()
    (root / "tmp").mkdir()
    queue.wait_mail("bob@example.com")
    queue.wait_queue_empty()
    assert len(queue.messages("bob@example.com")) == 1
    assert queue.messages("alice@example.com") == []


def test_too_many_retries_bounce_with_expired_status(tmp_path: Path, reactor_thread) -> None:
    """S4 + Q4: a transient failure that lasts past max_retries (and no soft-error re-sends)
    ends in a 4.4.7 DSN."""
    queue = running(reactor_thread, tmp_path, max_retries=1, soft_max_resends=0)
    try:

        def hold(mailbox: str):
            return tempfail("held", 451, "4.2.1") if mailbox.startswith("bob") else None

        queue.plugin_set = PluginSet([plugin("hold", mailmax_deliver=hold)])
        queue.submit(["bob@example.com"])
        (dsn,) = queue.wait_mail("alice@example.com")
        _, (bob,) = parse_dsn(dsn)
        assert bob["Status"] == "4.4.7" and "after 2 attempts" in bob["Diagnostic-Code"]
        assert "held" in bob["Diagnostic-Code"]
        queue.wait_queue_empty()
    finally:
        queue.stop()


def test_directory_outage_defers_instead_of_bouncing(queue: QueueHarness) -> None:
    """S4: when the directory cannot be read the delivery waits; it is not bounced."""
    bob = queue.recipient("bob@example.com")
    queue.recipient = lambda address: bob  # type: ignore[method-assign]
    queue.directory.fail = True
    queue_id = queue.submit(["bob@example.com"])
    envelope = queue.wait_for(
        lambda: (e := queue.spool.load(queue_id)).recipients[0].attempts >= 1 and e,
        "a deferred attempt",
    )
    assert envelope.recipients[0].state == "deferred"
    queue.directory.fail = False
    queue.wait_mail("bob@example.com")
    queue.wait_queue_empty()
    assert queue.messages("alice@example.com") == []


def test_max_hops_bounces_instead_of_delivering(tmp_path: Path, reactor_thread) -> None:
    """Q5: a queued message with more Received headers than smtp.max_hops, besides this
    server's own, is bounced (5.4.6)."""
    queue = running(reactor_thread, tmp_path, max_hops=3)
    try:
        queue.submit(["bob@example.com", "someone@remote.example"], received=5)
        (dsn,) = queue.wait_mail("alice@example.com")
        _, recipients = parse_dsn(dsn)
        assert {r["Status"] for r in recipients} == {"5.4.6"}
        assert len(recipients) == 2
        assert queue.messages("bob@example.com") == []
        queue.wait_queue_empty()
        queue.submit(["bob@example.com"], received=4)  # at the limit with ours: fine
        queue.wait_mail("bob@example.com")
    finally:
        queue.stop()


def test_restart_resumes_from_disk_without_duplicates(tmp_path: Path, reactor_thread) -> None:
    """Q1: messages queued while no runner ran are delivered when it starts; one that was
    already written to the Maildir before a crash (state not yet saved) is not written again."""
    queue = QueueHarness(tmp_path, reactor_thread)
    queue.start(runner=False)
    try:
        first = queue.submit(["bob@example.com"], body=b"one\r\n")
        second = queue.submit(["bob@example.com", "carol@example.com"], body=b"two\r\n")
        # the crash: bob's copy of `second` was stored, the envelope still says pending
        maildir.deliver(
            queue.maildir("bob@example.com"),
            "INBOX",
            queue.spool.message_path(second),
            f"{second}-0",
        )
        assert queue.spool.load(second).recipients[0].state == "pending"
        reactor_thread.call(queue.runner.startService)
        queue.wait_mail("carol@example.com")
        queue.wait_queue_empty()
        bodies = sorted(m.rsplit(b"\r\n\r\n", 1)[1] for m in queue.messages("bob@example.com"))
        assert bodies == [b"one\r\n", b"two\r\n"]
        assert first not in queue.spool.pending_ids()
    finally:
        queue.stop()


def test_delivery_hooks_choose_folder_discard_reject(queue: QueueHarness) -> None:
    """S4: mailmax_deliver picks a folder (Junk), accept() discards, reject() bounces."""

    def choose(mailbox: str):
        if mailbox == "dave@example.com":
            return reject("Not wanted here", 550, "5.7.1")
        return {"bob@example.com": "Junk", "carol@example.com": accept()}.get(mailbox)

    queue.directory.add_user("dave@example.com")
    queue.plugin_set = PluginSet([plugin("chooser", mailmax_deliver=choose)])
    queue.submit(["bob@example.com", "carol@example.com", "dave@example.com"])
    queue.wait_mail("bob@example.com", folder="Junk")
    (dsn,) = queue.wait_mail("alice@example.com")
    _, (dave,) = parse_dsn(dsn)
    assert dave["Final-Recipient"] == "rfc822; dave@example.com"
    assert dave["Status"] == "5.7.1" and "Not wanted here" in dave["Diagnostic-Code"]
    queue.wait_queue_empty()
    assert queue.messages("bob@example.com") == []
    assert queue.messages("carol@example.com") == []
    assert queue.messages("dave@example.com") == []


def test_expansion_forwards_and_deduplicates(queue: QueueHarness) -> None:
    """S4: mailmax_expand_recipient adds recipients (merged, de-duplicated); a forward loop
    between local users delivers each copy once."""

    def forward(mailbox: str):
        return {
            "bob@example.com": ["bob@example.com", "carol@example.com"],
            "carol@example.com": ["carol@example.com", "bob@example.com"],
        }.get(mailbox)

    queue.plugin_set = PluginSet([plugin("forward", mailmax_expand_recipient=forward)])
    queue.submit(["bob@example.com"])
    queue.wait_mail("carol@example.com")
    queue.wait_queue_empty()
    assert len(queue.messages("bob@example.com")) == 1
    assert len(queue.messages("carol@example.com")) == 1


def test_disabled_account_bounces(queue: QueueHarness) -> None:
    """A5: mail for a disabled account is refused with a DSN (5.2.1)."""
    queue.directory.add_user("bob@example.com", account_type=AccountType.DISABLED)
    queue.submit(["bob@example.com"])
    (dsn,) = queue.wait_mail("alice@example.com")
    assert parse_dsn(dsn)[1][0]["Status"] == "5.2.1"


def test_stop_lets_a_delivery_in_flight_finish(queue: QueueHarness) -> None:
    """S4: stopping the runner waits for a delivery in progress; its result is saved."""
    from twisted.internet import defer

    waiting: list[defer.Deferred] = []

    def slow(mailbox: str):
        d: defer.Deferred = defer.Deferred()
        waiting.append(d)
        return d

    queue.plugin_set = PluginSet([plugin("slow", mailmax_deliver=slow)])
    queue_id = queue.submit(["bob@example.com", "carol@example.com"])
    queue.wait_for(lambda: waiting, "the delivery hook to be called")
    stopped: list[object] = []

    def stop() -> None:
        queue.runner.stopService().addCallback(stopped.append)  # do not wait for it here

    queue.rt.call(stop)
    assert stopped == []
    queue.rt.call(waiting[0].callback, None)
    queue.wait_for(lambda: stopped, "the runner to stop")
    envelope = queue.spool.load(queue_id)
    assert [r.state for r in envelope.recipients] == ["delivered", "pending"]
    assert len(queue.messages("bob@example.com")) == 1
