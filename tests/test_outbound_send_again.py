"""The outbound client sends recipients answered 452 at RCPT again at once, in the next
transaction on the same connection (not after a retry interval)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.smtp_sink import smtp_sink
from tests.test_outbound_support import Outbound


def test_recipients_answered_452_go_in_the_next_transaction_at_once(
    outbound: Outbound, tmp_path: Path
) -> None:
    """A receiving server that keeps transactions homogeneous answers 452 4.5.3 to some
    recipients: they are sent again right away on the same connection, and the queue is empty
    long before any retry interval."""
    rcpt = {"carol@example.org": ["452 4.5.3 Other content checks: new transaction", "250 Ok"]}
    with smtp_sink(tmp_path / "sink", port=outbound.port, rcpt=rcpt) as sink:
        queue = outbound.queue(retry_minutes=60)
        queue.submit(["bob@example.org", "carol@example.org", "dave@example.org"])
        first, second = sink.wait_for(2)
        assert first["rcpts"] == ["bob@example.org", "dave@example.org"]
        assert first["refused"] == [["carol@example.org", rcpt["carol@example.org"][0]]]
        assert second["rcpts"] == ["carol@example.org"]
        assert sink.message(first) == sink.message(second)
        assert first["session"] == second["session"]  # one connection, two transactions
        queue.wait_queue_empty()


def test_a_server_taking_one_recipient_per_transaction_gets_them_all(
    outbound: Outbound, tmp_path: Path
) -> None:
    """RFC 5321 4.5.3.1.10: 452 for too many recipients; each round takes at least one, so
    every recipient arrives on one connection without waiting for a retry."""
    with smtp_sink(tmp_path / "sink", port=outbound.port, max_recipients=1) as sink:
        queue = outbound.queue(retry_minutes=60)
        queue.submit(["a@example.org", "b@example.org", "c@example.org"])
        txs = sink.wait_for(3)
        assert [tx["rcpts"] for tx in txs] == [[f"{n}@example.org"] for n in "abc"]
        assert len({tx["session"] for tx in txs}) == 1
        queue.wait_queue_empty()
