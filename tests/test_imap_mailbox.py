"""The selected state over real sockets: SELECT/EXAMINE, STORE, COPY/MOVE, EXPUNGE, CLOSE,
UNSELECT, IDLE, and what concurrent sessions see of each other (S3; RFC 3501 6.3-6.4 and 7.4.1,
RFC 4315 UIDPLUS, RFC 6851 MOVE, RFC 3691 UNSELECT, RFC 2177 IDLE). Regression for Twisted's
defect of ending IDLE on any line.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.test_imap_harness import IMAPWorld, MailUser, RawClient, message, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


def session(imap: IMAPWorld, user: MailUser, select: bytes = b"SELECT INBOX") -> RawClient:
    raw = imap.raw()
    raw.login(user)
    reply = raw.command(b"s", select)
    assert reply[-1].startswith(b"s OK"), reply
    return raw


def with_messages(imap: IMAPWorld, count: int) -> MailUser:
    user = imap.new_user()
    for index in range(count):
        imap.deliver(user, message(f"message {index + 1}"))
    return user


def test_select_responses(imap: IMAPWorld) -> None:
    """S3: SELECT sends FLAGS, PERMANENTFLAGS, EXISTS, RECENT, UNSEEN, UIDVALIDITY, UIDNEXT
    and READ-WRITE; the messages stop being recent for the next session."""
    user = with_messages(imap, 3)
    raw = imap.raw()
    raw.login(user)
    reply = raw.command(b"s", b"SELECT INBOX")
    assert reply[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    assert reply[1] == (
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Limited"
    )
    assert reply[2:5] == [b"* 3 EXISTS", b"* 3 RECENT", b"* OK [UNSEEN 1] First unseen"]
    assert re.fullmatch(rb"\* OK \[UIDVALIDITY \d+\] UIDs valid", reply[5])
    assert reply[6:] == [
        b"* OK [UIDNEXT 4] Predicted next UID",
        b"s OK [READ-WRITE] SELECT completed",
    ]
    raw.command(b"t", b"STORE 1 +FLAGS.SILENT (\\Seen)")
    raw.close()
    raw = imap.raw()
    raw.login(user)
    reply = raw.command(b"e", b"EXAMINE INBOX")
    assert b"* 0 RECENT" in reply and b"* OK [UNSEEN 2] First unseen" in reply
    assert b"* OK [PERMANENTFLAGS ()] Limited" in reply
    assert reply[-1] == b"e OK [READ-ONLY] EXAMINE completed"
    assert raw.command(b"f", b"STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"f NO [READ-ONLY]")
    assert raw.command(b"g", b"EXPUNGE")[-1].startswith(b"g NO [READ-ONLY]")
    assert raw.command(b"h", b"SELECT Nowhere")[-1] == b"h NO [NONEXISTENT] No such mailbox"
    assert raw.command(b"i", b"FETCH 1 FLAGS")[-1] == b"i BAD No mailbox selected"
    raw.close()


def test_store_variants(imap: IMAPWorld) -> None:
    """S3: FLAGS, +FLAGS, -FLAGS, .SILENT, keywords; UID STORE includes the UID."""
    user = with_messages(imap, 2)
    raw = session(imap, user)
    assert raw.command(b"a", b"STORE 1 +FLAGS (\\Flagged $Work)") == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Limited",
        b"* 1 FETCH (FLAGS (\\Flagged \\Recent $Work))",
        b"a OK STORE completed",
    ]
    assert raw.command(b"b", b"STORE 1:2 FLAGS \\Seen") == [
        b"* 1 FETCH (FLAGS (\\Recent \\Seen))",
        b"* 2 FETCH (FLAGS (\\Recent \\Seen))",
        b"b OK STORE completed",
    ]
    assert raw.command(b"c", b"STORE 2 -FLAGS.SILENT (\\Seen)") == [b"c OK STORE completed"]
    assert raw.command(b"d", b"UID STORE 2 +FLAGS (\\Answered)") == [
        b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Recent))",
        b"d OK STORE completed",
    ]
    assert raw.command(b"e", b"STORE 1 +FLAGS (\\Bogus)")[-1].startswith(b"e BAD")
    assert raw.command(b"f", b"STORE 1 XFLAGS (\\Seen)")[-1].startswith(b"f BAD")
    names = sorted(p.name for p in (user.maildir / "cur").iterdir())
    assert names[0].endswith(":2,S") and names[1].endswith(":2,R")
    reply = raw.command(b"g", b"SELECT INBOX")
    assert reply[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"
    raw.close()


def test_expunge_and_uid_expunge(imap: IMAPWorld) -> None:
    """S3: EXPUNGE reports each removed message with the right (shifting) numbers; UID
    EXPUNGE removes only the listed \\Deleted messages; the files are gone."""
    user = with_messages(imap, 5)
    raw = session(imap, user)
    raw.command(b"a", b"STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
    assert raw.command(b"b", b"UID EXPUNGE 4:5") == [
        b"* 4 EXPUNGE",
        b"* 4 EXPUNGE",
        b"b OK EXPUNGE completed",
    ]
    raw.command(b"c", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.command(b"d", b"EXPUNGE") == [
        b"* 1 EXPUNGE",
        b"* 1 EXPUNGE",
        b"d OK EXPUNGE completed",
    ]
    assert raw.command(b"e", b"UID SEARCH ALL") == [b"* SEARCH 3", b"e OK SEARCH completed"]
    assert len(list((user.maildir / "cur").iterdir())) == 1
    raw.close()


def test_close_expunges_and_unselect_does_not(imap: IMAPWorld) -> None:
    """S3: CLOSE removes \\Deleted messages silently; UNSELECT leaves them."""
    user = with_messages(imap, 2)
    raw = session(imap, user)
    raw.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.command(b"b", b"UNSELECT") == [b"b OK UNSELECT completed"]
    assert raw.command(b"c", b"FETCH 1 FLAGS")[-1] == b"c BAD No mailbox selected"
    assert b"* 2 EXISTS" in raw.command(b"d", b"SELECT INBOX")
    assert raw.command(b"e", b"CLOSE") == [b"e OK CLOSE completed"]
    assert b"* 1 EXISTS" in raw.command(b"f", b"EXAMINE INBOX")
    assert raw.command(b"g", b"CLOSE") == [b"g OK CLOSE completed"]
    raw.close()


def test_copy_and_move_with_copyuid(imap: IMAPWorld) -> None:
    """S3: COPY keeps flags and answers COPYUID; MOVE sends COPYUID then EXPUNGEs; a missing
    target gives TRYCREATE."""
    user = with_messages(imap, 3)
    raw = session(imap, user)
    raw.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    reply = raw.command(b"b", b"COPY 1:2 Trash")
    match = re.fullmatch(rb"b OK \[COPYUID (\d+) 1:2 1:2\] COPY completed", reply[-1])
    assert match, reply
    reply = raw.command(b"c", b"UID MOVE 3 Trash")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 3 3\] Moved", reply[0]), reply
    assert reply[1:] == [b"* 3 EXPUNGE", b"c OK MOVE completed"]
    assert raw.command(b"d", b"COPY 1 Nowhere")[-1] == b"d NO [TRYCREATE] No such mailbox"
    assert raw.command(b"e", b"MOVE 5 Trash")[-1] == b"e BAD Invalid message sequence number"
    assert raw.command(b"f", b"UID COPY 99 Trash") == [b"f OK No messages to copy"]
    reply = raw.command(b"g", b"SELECT Trash")
    assert b"* 3 EXISTS" in reply
    flags = raw.command(b"h", b"FETCH 1:3 (FLAGS)")
    assert flags[0] == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))"  # first to see the copies
    raw.close()


def test_other_sessions_see_flags_expunges_and_deliveries(imap: IMAPWorld) -> None:
    """S3: a second session learns of flag changes, expunges and new mail at NOOP; never
    an EXPUNGE while answering FETCH, STORE or SEARCH (RFC 3501 7.4.1)."""
    user = with_messages(imap, 3)
    first = session(imap, user)
    second = session(imap, user)
    assert len(second.command(b"x", b"FETCH 1:3 (FLAGS)")) == 4
    first.command(b"a", b"STORE 2 +FLAGS.SILENT (\\Flagged)")
    first.command(b"b", b"STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert first.command(b"c", b"EXPUNGE") == [b"* 3 EXPUNGE", b"c OK EXPUNGE completed"]
    imap.deliver(user, message("late"))
    # FETCH, STORE, SEARCH in the second session: no EXPUNGE, numbering unchanged
    assert second.command(b"d", b"FETCH 3 (BODY.PEEK[])") == [
        b"d NO [EXPUNGEISSUED] Some messages were expunged by another session",
    ]
    assert second.command(b"e", b"STORE 1:3 +FLAGS (\\Answered)") == [
        b"* 1 FETCH (FLAGS (\\Answered))",
        b"* 2 FETCH (FLAGS (\\Answered \\Flagged))",
        b"e NO [EXPUNGEISSUED] Some messages were expunged by another session",
    ]
    assert second.command(b"e", b"SEARCH ALL") == [b"* SEARCH 1 2 3", b"e OK SEARCH completed"]
    assert second.command(b"f", b"NOOP") == [
        b"* 3 EXPUNGE",
        b"* 3 EXISTS",
        b"* 1 RECENT",
        b"f OK NOOP completed",
    ]
    assert second.command(b"g", b"FETCH 3 (UID FLAGS)") == [
        b"* 3 FETCH (UID 4 FLAGS (\\Recent))",
        b"g OK FETCH completed",
    ]
    # the first session learns of the delivery and the flags; the new message is recent
    # for the second session only
    assert first.command(b"h", b"CHECK") == [
        b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))",
        b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged \\Recent))",
        b"* 3 EXISTS",
        b"* 2 RECENT",
        b"h OK CHECK completed",
    ]
    first.close()
    second.close()


def test_uid_commands_may_report_expunges(imap: IMAPWorld) -> None:
    """S3: UID FETCH is followed by pending EXPUNGE responses (allowed for UID commands);
    until then the expunged message still answers from the session's view."""
    user = with_messages(imap, 2)
    first = session(imap, user)
    second = session(imap, user)
    assert len(second.command(b"x", b"FETCH 1:2 (FLAGS)")) == 3
    first.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    first.command(b"b", b"EXPUNGE")
    assert second.command(b"c", b"UID FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (UID 1 FLAGS ())",
        b"* 2 FETCH (UID 2 FLAGS ())",
        b"* 1 EXPUNGE",
        b"c OK FETCH completed",
    ]
    assert second.command(b"d", b"UID FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (UID 2 FLAGS ())",
        b"d OK FETCH completed",
    ]
    first.close()
    second.close()


# ---------------------------------------------------------------------- IDLE
def read_until(raw: RawClient, wanted: bytes, timeout: float = 5.0) -> list[bytes]:
    lines = []
    deadline = time.monotonic() + timeout
    raw.sock.settimeout(timeout)
    while time.monotonic() < deadline:
        line = raw.line()
        lines.append(line)
        if line == wanted:
            return lines
    raise AssertionError(f"{wanted!r} not seen in {lines!r}")


def test_idle_reports_delivery_flags_and_expunge(imap: IMAPWorld) -> None:
    """S3: while idling, a delivery, another session's flag change and expunge are pushed."""
    user = with_messages(imap, 2)
    idler = session(imap, user)
    other = session(imap, user)
    idler.send(b"i IDLE\r\n")
    assert idler.line() == b"+ idling"
    imap.deliver(user, message("pushed"))
    assert read_until(idler, b"* 3 RECENT") == [b"* 3 EXISTS", b"* 3 RECENT"]
    other.command(b"a", b"STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert read_until(idler, b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))")
    other.command(b"b", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command(b"c", b"EXPUNGE")
    assert read_until(idler, b"* 1 EXPUNGE")
    idler.send(b"DONE\r\n")
    assert idler.response(b"i")[-1] == b"i OK IDLE terminated"
    assert idler.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
    idler.close()
    other.close()


def test_idle_ends_only_on_done(imap: IMAPWorld) -> None:
    """S3 (Twisted defect): any line but DONE during IDLE is answered BAD and IDLE goes on;
    a delivery after the stray line is still pushed."""
    user = with_messages(imap, 1)
    idler = session(imap, user)
    idler.send(b"i IDLE\r\n")
    assert idler.line() == b"+ idling"
    idler.send(b"x NOOP\r\n")
    assert idler.line() == b"* BAD Expected DONE to end IDLE"
    idler.send(b"x LOGOUT\r\n")
    assert idler.line() == b"* BAD Expected DONE to end IDLE"
    imap.deliver(user, message("still idling"))
    assert read_until(idler, b"* 2 EXISTS")
    idler.send(b"done\r\n")
    assert read_until(idler, b"i OK IDLE terminated")
    idler.close()


def test_idle_in_authenticated_state(imap: IMAPWorld) -> None:
    """S3: IDLE without a selected mailbox just waits for DONE."""
    user = imap.new_user()
    raw = imap.raw()
    raw.login(user)
    raw.send(b"i IDLE\r\n")
    assert raw.line() == b"+ idling"
    raw.send(b"DONE\r\n")
    assert raw.response(b"i") == [b"i OK IDLE terminated"]
    raw.close()
