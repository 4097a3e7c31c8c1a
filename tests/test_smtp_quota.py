"""A full mailbox is a temporary condition (A14, A5): over real SMTP and the queue.

At RCPT ``452 4.2.2`` when ``SIZE=`` shows the message will not fit; at the end of DATA only
when it fits no recipient; otherwise the full box's copy waits in the queue and is delivered
once the box has room.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailmax.testing import TestServer, start_server
from tests.plugins_builtin.support import queued

ALICE, BOB = "alice@example.test", "bob@example.test"
SENDER = "joe@sender.test"
BIG = 700_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    server = start_server(tmp_path_factory.mktemp("quota"), plugins=[])
    server.cli("user", "edit", BOB, "--disk-limit-mb", "1")
    yield server
    server.stop(timeout=15)


def _message(subject: str, size: int = 0) -> bytes:
    head = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\n".encode()
    return head + (b"x" * 998 + b"\r\n") * (size // 1000) + b"end\r\n"


def _remove_all(server: TestServer, address: str) -> None:
    for folder in ("new", "cur"):
        for path in (server.maildir(address) / folder).iterdir():
            path.unlink()


def test_full_box_is_temporary_at_rcpt_data_and_in_the_queue(server: TestServer) -> None:
    """A14: 452 4.2.2 at RCPT with SIZE=; 452 4.2.2 at the end of DATA when every recipient
    is full; a message for a full and a roomy box is accepted and the full box's copy waits in
    the queue (no bounce) until the box is emptied, then it is delivered."""
    with server.smtp() as client:
        assert client.sendmail(SENDER, [BOB], _message("fill", BIG)) == {}
    server.wait_for_mail(BOB)

    with server.smtp() as client:
        client.ehlo("client.test")
        assert client.mail(SENDER, [f"SIZE={BIG}"])[0] == 250
        code, text = client.rcpt(BOB)
        assert (code, text[:5]) == (452, b"4.2.2") and b"Mailbox full" in text
        assert client.rcpt(ALICE)[0] == 250  # the session goes on for other recipients
        client.rset()
        # without SIZE= (smtplib sends it when it can): only the end of DATA knows the size
        assert client.mail(SENDER)[0] == 250 and client.rcpt(BOB)[0] == 250
        code, text = client.data(_message("too big", BIG))
        assert (code, text[:5]) == (452, b"4.2.2")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(BOB)[0] == 250 and client.rcpt(ALICE)[0] == 250
        assert client.data(_message("both", BIG))[0] == 250

    server.wait_for(lambda: [m for m in server.messages(ALICE) if b"Subject: both" in m])
    waiting = server.wait_for(
        lambda: [
            r
            for env in queued(server)
            for r in env["recipients"]
            if r["address"] == BOB and r.get("last_error", "").startswith("452 4.2.2")
        ],
        what="bob's copy deferred with 452 4.2.2",
    )
    assert waiting[0]["state"] == "deferred"
    assert not [env for env in queued(server) if env["sender"] == ""]  # no bounce
    _remove_all(server, BOB)
    (delivered,) = server.wait_for_mail(BOB)
    assert b"Subject: both" in delivered
