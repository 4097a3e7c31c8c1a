"""Max hops over real SMTP: counted alike at DATA and at delivery, never accept-then-bounce."""

from __future__ import annotations

import smtplib

import pytest

from tests.fixtures.ports import wait_until


def message(hops: int, subject: str) -> bytes:
    """A message that arrives with ``hops`` Received headers."""
    received = b"".join(
        b"Received: from hop%d.remote.test by hop%d.remote.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        % (i, i + 1)
        for i in range(hops)
    )
    return received + b"Subject: " + subject.encode() + b"\r\n\r\nhi\r\n"


def test_fifty_hops_are_delivered_fifty_one_refused_at_data(mailmax):
    """With max_hops = 50 (the default) 50 Received headers get 250 and reach the mailbox; 51
    get 554 5.4.6 at the end of DATA; the sender is never bounced later."""
    with mailmax.smtp() as client:
        client.sendmail("bob@example.test", ["alice@example.test"], message(50, "fifty"))
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("bob@example.test", ["alice@example.test"], message(51, "too far"))
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(
        b"5.4.6 Too many hops (51 Received headers, limit 50)"
    )
    (stored,) = mailmax.wait_for_mail("alice@example.test")
    assert b"Subject: fifty" in stored
    assert stored.count(b"\nReceived: ") + stored.startswith(b"Received: ") >= 51
    wait_until(
        lambda: mailmax.cli("queue", "list", "--json").stdout.strip() == "[]", 10, "an empty queue"
    )
    assert mailmax.messages("bob@example.test") == []  # no bounce to the sender
