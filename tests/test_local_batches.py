"""Local delivery in batches (S4, A5): Maildir writes of concurrent deliveries share one
thread job and one fsync per new/ directory, and nothing is reported delivered before it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from mailmax.core.queue.local import StoreBatcher
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool
from mailmax.core.store import maildir
from tests.test_queue_support import QueueHarness, parse_dsn, running
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the spool and the runner."""
    yield from running_reactor()


class ManualThreads:
    """An ``in_thread`` that records each job and runs it only when told to."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, list[Any], defer.Deferred[Any]]] = []

    def __call__(self, fn: Any, requests: list[Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.jobs.append((fn, requests, d))
        return d

    def run(self, index: int) -> None:
        fn, requests, d = self.jobs[index]
        try:
            d.callback(fn(requests))
        except Exception as exc:
            d.errback(exc)


def test_requests_made_while_batches_run_go_together() -> None:
    """S4: with one batch at a time, what arrives meanwhile waits and goes as one job; each
    request gets its own result, and a failing job fails each of its requests."""
    threads = ManualThreads()
    batcher = StoreBatcher(
        lambda requests: threads(lambda rs: [r * 10 for r in rs], requests), parallel=1
    )
    results: list[Any] = []
    for n in (1, 2, 3, 4):
        batcher.submit(n).addBoth(results.append)
    assert [requests for _, requests, _ in threads.jobs] == [[1]]
    threads.run(0)
    assert results == [10]
    assert [requests for _, requests, _ in threads.jobs] == [[1], [2, 3, 4]]
    threads.run(1)
    assert results == [10, 20, 30, 40]

    broken = StoreBatcher(lambda requests: threads(lambda rs: 1 / 0, requests), parallel=2)
    failures: list[Any] = []
    for n in (5, 6, 7):
        broken.submit(n).addErrback(lambda f: failures.append(f.type))
    assert [requests for _, requests, _ in threads.jobs[2:]] == [[5], [6]]
    threads.run(2)
    assert [requests for _, requests, _ in threads.jobs[4:]] == [[7]]
    threads.run(3)
    threads.run(4)
    assert failures == [ZeroDivisionError] * 3
    with pytest.raises(ValueError):
        StoreBatcher(lambda requests: threads(lambda rs: rs, requests), parallel=0)


def bob() -> SpoolRecipient:
    """bob@example.com as the SMTP server queues him."""
    return SpoolRecipient("bob@example.com", mailbox="bob@example.com")


def count_dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every directory fsync the Maildir module makes."""
    synced: list[str] = []
    lock = threading.Lock()
    real = maildir._fsync_dir

    def record(path: Path | str) -> None:
        real(path)
        with lock:
            synced.append(str(path))

    monkeypatch.setattr(maildir, "_fsync_dir", record)
    return synced


def test_a_burst_is_stored_with_fewer_directory_fsyncs_than_messages(
    tmp_path: Path, reactor_thread: ReactorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S4: forty messages queued at once all arrive exactly once, with fewer fsyncs of the
    inbox's new/ than messages (the batches shared them)."""
    synced = count_dir_syncs(monkeypatch)
    queue = running(reactor_thread, tmp_path)
    try:
        envelopes = [
            SpoolEnvelope(queue.spool.new_id(), "alice@example.com", [bob()], time.time())
            for _ in range(40)
        ]

        def burst() -> defer.Deferred[Any]:
            return defer.gatherResults(
                [
                    queue.spool.accept(env, [b"Subject: t\r\n\r\n", f"n{i}\r\n".encode()])
                    for i, env in enumerate(envelopes)
                ]
            )

        ids = queue.rt.call(burst)
        queue.wait_mail("bob@example.com", 40)
        queue.wait_queue_empty()
        messages = queue.messages("bob@example.com")
        assert len(messages) == 40
        assert sorted(m.split(b"\r\n\r\n", 1)[1] for m in messages) == sorted(
            f"n{i}\r\n".encode() for i in range(40)
        )
        new_dir = str(queue.maildir("bob@example.com") / "new")
        assert 0 < synced.count(new_dir) < len(ids)
    finally:
        queue.stop()


def test_no_delivery_is_reported_before_its_directory_is_synced(
    tmp_path: Path, reactor_thread: ReactorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S4: when fsync of new/ fails, the delivery is deferred (not delivered, not bounced);
    once it works again the message is there exactly once."""
    real = maildir._fsync_dir
    failing = {"on": True}

    def flaky(path: Path | str) -> None:
        if failing["on"] and str(path).endswith("/bob/new"):
            raise OSError(5, "Input/output error")
        real(path)

    monkeypatch.setattr(maildir, "_fsync_dir", flaky)
    queue: QueueHarness = running(reactor_thread, tmp_path)
    try:
        queue_id = queue.submit(["bob@example.com"])
        envelope = queue.wait_for(
            lambda: (e := queue.spool.load(queue_id)).recipients[0].attempts >= 1 and e,
            "a deferred attempt",
        )
        bob = envelope.recipients[0]
        assert bob.state == "deferred" and "Input/output error" in bob.last_error
        failing["on"] = False
        queue.wait_queue_empty()
        assert len(queue.messages("bob@example.com")) == 1
        assert queue.messages("alice@example.com") == []  # no bounce
    finally:
        queue.stop()


def test_maildir_writes_go_through_the_spool_writer_process(
    tmp_path: Path, reactor_thread: ReactorThread
) -> None:
    """S4/A5: with a writer process, local deliveries are written by it: a burst arrives
    exactly once, a disk limit still holds (the copy bounces when its retries are used up),
    and the queue empties."""
    queue = QueueHarness(tmp_path, reactor_thread, max_retries=1, soft_max_resends=0)
    queue.spool = Spool(tmp_path / "queue", reactor=reactor_thread.reactor, helper=True)
    queue.runner = queue.new_runner()
    assert queue.runner.local.spool is queue.spool
    queue.start()
    try:
        envelopes = [
            SpoolEnvelope(queue.spool.new_id(), "alice@example.com", [bob()], time.time())
            for _ in range(30)
        ]

        def burst() -> defer.Deferred[Any]:
            return defer.gatherResults(
                [
                    queue.spool.accept(env, [b"Subject: t\r\n\r\n", f"n{i}\r\n".encode()])
                    for i, env in enumerate(envelopes)
                ]
            )

        queue.rt.call(burst)
        messages = queue.wait_mail("bob@example.com", 30)
        assert sorted(m.split(b"\r\n\r\n", 1)[1] for m in messages) == sorted(
            f"n{i}\r\n".encode() for i in range(30)
        )
        assert all(m.startswith(b"Return-Path: <alice@example.com>\r\n") for m in messages)
        queue.directory.add_user("carol@example.com", disk_limit_mb=1)
        queue.submit(["carol@example.com"], body=b"x" * 1_100_000 + b"\r\n")
        (dsn,) = queue.wait_mail("alice@example.com")
        assert "452 4.2.2" in parse_dsn(dsn)[1][0]["Diagnostic-Code"]
        queue.wait_queue_empty()
        assert len(queue.messages("bob@example.com")) == 30
    finally:
        queue.stop()
