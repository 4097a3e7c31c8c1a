"""\\Recent for messages APPEND and COPY add (RFC 3501 2.3.2): recent for exactly one session,
the next that selects the folder, or the one that has it selected when they arrive (S3).
"""

from __future__ import annotations

import pytest

from tests.test_imap_harness import IMAPWorld, RawClient, message, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


def _append(raw: RawClient, tag: bytes, folder: bytes, data: bytes, flags: bytes = b"") -> None:
    raw.send(b"%s APPEND %s %s{%d+}\r\n%s\r\n" % (tag, folder, flags, len(data), data))
    assert raw.response(tag)[-1].startswith(tag + b" OK [APPENDUID ")


def test_appended_and_copied_messages_are_recent_for_the_next_session(imap: IMAPWorld) -> None:
    """S3: messages appended to or copied into a folder are \\Recent for the next session
    that selects it (EXAMINE shows them without claiming; STATUS counts them), and for no
    session after that."""
    user = imap.new_user()
    imap.deliver(user, message("delivered"))
    writer = imap.raw()
    writer.login(user)
    _append(writer, b"a", b"Trash", message("appended"), b"(\\Seen) ")
    assert writer.command(b"b", b"SELECT INBOX")[-1].startswith(b"b OK")
    assert writer.command(b"c", b"COPY 1 Trash")[-1].startswith(b"c OK [COPYUID ")
    assert writer.command(b"d", b"STATUS Trash (MESSAGES RECENT)")[0] == (
        b'* STATUS "Trash" (MESSAGES 2 RECENT 2)'
    )
    writer.close()

    looker = imap.raw()
    looker.login(user)
    reply = looker.command(b"e", b"EXAMINE Trash")
    assert b"* 2 RECENT" in reply
    assert looker.command(b"f", b"FETCH 1:2 (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent \\Seen))",
        b"* 2 FETCH (FLAGS (\\Recent))",
        b"f OK FETCH completed",
    ]
    reply = looker.command(b"g", b"SELECT Trash")
    assert b"* 2 RECENT" in reply
    assert looker.command(b"h", b"FETCH 1:2 (FLAGS)")[:2] == [
        b"* 1 FETCH (FLAGS (\\Recent \\Seen))",
        b"* 2 FETCH (FLAGS (\\Recent))",
    ]
    looker.close()

    later = imap.raw()
    later.login(user)
    assert b"* 0 RECENT" in later.command(b"i", b"SELECT Trash")
    assert later.command(b"j", b"FETCH 1:2 (FLAGS)")[:2] == [
        b"* 1 FETCH (FLAGS (\\Seen))",
        b"* 2 FETCH (FLAGS ())",
    ]
    later.close()


def test_append_to_the_selected_folder_is_recent_in_that_session(imap: IMAPWorld) -> None:
    """S3: a message appended to the folder a session has selected is reported to it with
    EXISTS and RECENT, and is \\Recent there; another session then sees it as not recent."""
    user = imap.new_user()
    imap.deliver(user, message("first"))
    raw = imap.raw()
    raw.login(user)
    assert b"* 1 RECENT" in raw.command(b"s", b"SELECT INBOX")
    raw.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(message("second")), message("second")))
    reply = raw.response(b"a")
    assert reply[:2] == [b"* 2 EXISTS", b"* 2 RECENT"], reply
    assert raw.command(b"b", b"FETCH 2 (FLAGS)")[0] == b"* 2 FETCH (FLAGS (\\Recent))"
    other = imap.raw()
    other.login(user)
    assert b"* 0 RECENT" in other.command(b"c", b"SELECT INBOX")
    other.close()
    raw.close()
