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

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
SENDER = "joe@sender.test"
BIG = 700_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    server = start_server(tmp_path_factory.mktemp("quota"), plugins=[])
    with server.directory() as directory:
        directory.edit_user(BOB, disk_limit_mb=1)
        directory.add_user(CAROL, "carolsecret", disk_limit_mb=1)
    yield server
    server.stop(timeout=15)


def _message(subject: str, size: int = 0) -> bytes:
    head = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\n".encode()
    return head + (b"x" * 998 + b"\r\n") * (size // 1000) + b"end\r\n"


def _remove_all(server: TestServer, address: str) -> None:
    """Empty the INBOX the way a Maildir++ tool outside the server does: the files go, and
    the usage cache (``maildirsize``) with them, so it is counted again."""
    for folder in ("new", "cur"):
        for path in (server.maildir(address) / folder).iterdir():
            path.unlink()
    (server.maildir(address) / "maildirsize").unlink(missing_ok=True)


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


def _notices(server: TestServer, address: str) -> list[bytes]:
    return [m for m in server.messages(address) if b"Subject: Your mailbox is " in m]


def test_over_limit_notice_once_per_crossing(server: TestServer) -> None:
    """A14: a delivery that leaves less than the domain's threshold (percent left) sends the
    user one notice from the null sender; the next delivery none; after the box is emptied
    the notice is re-armed and comes again at the next crossing."""
    carol = CAROL
    server.cli(
        "domain", "edit", "example.test", "--over-limit-notice", "percent",
        "--over-limit-threshold", "50",
    )  # fmt: skip
    with server.smtp() as client:
        assert client.sendmail(SENDER, [carol], _message("first", 300_000)) == {}
    server.wait_for_mail(carol)
    with server.smtp() as client:
        assert client.sendmail(SENDER, [carol], _message("second", 300_000)) == {}
    server.wait_for_mail(carol, count=3)
    (notice,) = _notices(server, carol)
    assert notice.startswith(b"Return-Path: <>")
    assert b"Auto-Submitted: auto-generated" in notice and b"of its 1.0 MB limit" in notice
    with server.smtp() as client:
        assert client.sendmail(SENDER, [carol], _message("third", 1000)) == {}
    server.wait_for_mail(carol, count=4)
    assert len(_notices(server, carol)) == 1
    _remove_all(server, carol)
    with server.smtp() as client:
        assert client.sendmail(SENDER, [carol], _message("room again", 1000)) == {}
        assert client.sendmail(SENDER, [carol], _message("big again", 600_000)) == {}
    server.wait_for_mail(carol, count=3)
    assert len(_notices(server, carol)) == 1
