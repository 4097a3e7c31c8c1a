"""Remote delivery of many messages at once (Q2, Q3): messages found together are read in
batches and sent over a few reused connections; one message's failure stays that message's."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.smtp_sink import smtp_sink
from tests.test_outbound_support import Outbound

#: Messages per test: more than one read batch would hold is not needed to mix outcomes.
COUNT = 24


def test_queued_messages_found_at_start_go_over_few_connections(
    outbound: Outbound, tmp_path: Path
) -> None:
    """Q2: messages already queued when the runner starts are all delivered, each exactly
    once, over no more connections than max_per_destination; the queue is then empty. The
    next message's MAIL, RCPT and DATA follow a message's end at once, in the same read,
    without waiting for its reply (PIPELINING)."""
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue(start=False, max_per_destination=3, reuse_seconds=5)
        queue.start(runner=False)
        for n in range(COUNT):
            queue.submit([f"user{n}@example.org"])
        queue.rt.call(queue.runner.startService)
        transactions = sink.wait_for(COUNT)
        queue.wait_queue_empty()
        rcpts = sorted(r for tx in transactions for r in tx["rcpts"])
        assert rcpts == sorted(f"user{n}@example.org" for n in range(COUNT))
        assert sink.most_connections() <= 3
        sessions = {tx["session"] for tx in transactions}
        assert len(sessions) <= 3
        queue.rt.call(queue.runner.stopService)  # closes the idle connections
        queue.wait_for(lambda: len(sink.sessions()) >= len(sessions), "the sessions to end")
        follow_ups = together = 0
        for session in sink.sessions():
            commands, chunks = session["commands"], session["chunks"]
            data_reads = [chunks[i] for i, c in enumerate(commands) if c == "DATA"]
            mail_reads = [chunks[i] for i, c in enumerate(commands) if c.startswith("MAIL")]
            for previous_data, mail in zip(data_reads, mail_reads[1:], strict=False):
                follow_ups += 1
                together += mail == previous_data + 1  # the read after DATA: content + MAIL
        assert follow_ups == COUNT - len(sessions)
        assert together >= follow_ups // 2


def test_a_temporary_refusal_leaves_only_that_message_queued(
    outbound: Outbound, tmp_path: Path
) -> None:
    """Q3: among many messages sent over shared connections, the one whose recipient gets a
    451 stays queued (deferred, with the reply), every other one is delivered and removed."""
    refused = "user7@example.org"
    with smtp_sink(
        tmp_path / "sink", port=outbound.port, rcpt={refused: "451 4.2.1 Mailbox busy"}
    ) as sink:
        queue = outbound.queue(start=False, max_per_destination=2, retry_minutes=60)
        queue.start(runner=False)
        ids = {n: queue.submit([f"user{n}@example.org"]) for n in range(COUNT)}
        queue.rt.call(queue.runner.startService)
        sink.wait_for(COUNT - 1)
        queue.wait_for(lambda: queue.spool.pending_ids() == [ids[7]], "only the refused one")
        (recipient,) = queue.spool.load(ids[7]).recipients
        assert recipient.state == "deferred" and recipient.attempts == 1
        assert "451 4.2.1 Mailbox busy" in recipient.last_error
        delivered = sorted(r for tx in sink.transactions() for r in tx["rcpts"])
        assert delivered == sorted(f"user{n}@example.org" for n in range(COUNT) if n != 7)


def test_an_unreadable_envelope_among_many_is_set_aside_alone(
    outbound: Outbound, tmp_path: Path
) -> None:
    """Q1: a message whose envelope cannot be read goes to corrupt/; the messages read with
    it are delivered as usual."""
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue(start=False)
        queue.start(runner=False)
        ids = [queue.submit([f"user{n}@example.org"]) for n in range(COUNT)]
        queue.spool.envelope_path(ids[5]).write_text("{ not json")
        queue.rt.call(queue.runner.startService)
        sink.wait_for(COUNT - 1)
        queue.wait_queue_empty()
        assert (queue.spool.corrupt_dir / f"{ids[5]}.json").exists()
        delivered = sorted(r for tx in sink.transactions() for r in tx["rcpts"])
        assert delivered == sorted(f"user{n}@example.org" for n in range(COUNT) if n != 5)
