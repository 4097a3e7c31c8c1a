"""Folders, subscriptions, STATUS, APPEND and QUOTA over real sockets (S3, A5; RFC 3501 6.3,
RFC 6154 SPECIAL-USE, RFC 4315 UIDPLUS, RFC 7888 LITERAL+, RFC 2087 QUOTA). Regression for
Twisted's defect of inviting a 50 GB APPEND literal.
"""

from __future__ import annotations

import imaplib
import time

import pytest

from tests.test_imap_harness import MAX_MESSAGE, IMAPWorld, message, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


def listing(client: imaplib.IMAP4, *args: str, command: str = "LIST") -> list[bytes]:
    typ, data = client._simple_command(command, *args) if args else (None, None)
    typ, data = client._untagged_response(typ, data, command)
    assert typ == "OK", data
    return [line for line in data if line is not None]


def test_special_use_folders_on_first_login(imap: IMAPWorld) -> None:
    """S3: the first log-in creates Drafts, Sent, Trash, Junk with SPECIAL-USE attributes and
    subscribes them; deleting one later does not bring it back."""
    user = imap.new_user()
    client = imap.client(user)
    assert listing(client, '""', "*") == [
        b'(\\HasNoChildren) "/" "INBOX"',
        b'(\\HasNoChildren \\Drafts) "/" "Drafts"',
        b'(\\HasNoChildren \\Junk) "/" "Junk"',
        b'(\\HasNoChildren \\Sent) "/" "Sent"',
        b'(\\HasNoChildren \\Trash) "/" "Trash"',
    ]
    assert (user.maildir / ".Sent" / "cur").is_dir()
    assert len(listing(client, '""', "*", command="LSUB")) == 5
    assert client.delete("Junk")[0] == "OK"
    client.logout()
    client = imap.client(user)
    assert b'(\\HasNoChildren \\Junk) "/" "Junk"' not in listing(client, '""', "*")
    client.logout()


def test_create_delete_rename_hierarchy(imap: IMAPWorld) -> None:
    """S3: CREATE makes missing parents; LIST shows children; RENAME moves subfolders; DELETE
    keeps children (the parent becomes \\Noselect)."""
    user = imap.new_user()
    client = imap.client(user)
    assert client.create("Projects/2024/Q1")[0] == "OK"
    assert client.create("Projects/")[1] == [b"[ALREADYEXISTS] Mailbox already exists"]
    assert listing(client, '""', "Projects*") == [
        b'(\\HasChildren) "/" "Projects"',
        b'(\\HasChildren) "/" "Projects/2024"',
        b'(\\HasNoChildren) "/" "Projects/2024/Q1"',
    ]
    assert listing(client, '"Projects/"', "%") == [b'(\\HasChildren) "/" "Projects/2024"']
    assert client.rename("Projects", "Archive/Old")[0] == "OK"
    assert listing(client, '""', "Archive/*") == [
        b'(\\HasChildren) "/" "Archive/Old"',
        b'(\\HasChildren) "/" "Archive/Old/2024"',
        b'(\\HasNoChildren) "/" "Archive/Old/2024/Q1"',
    ]
    assert client.delete("Archive/Old")[0] == "OK"
    assert listing(client, '""', "Archive/%") == [b'(\\Noselect \\HasChildren) "/" "Archive/Old"']
    typ, data = client.delete("Nowhere")
    assert (typ, data) == ("NO", [b"[NONEXISTENT] No such mailbox"])
    assert client.delete("INBOX")[1] == [b"[CANNOT] INBOX cannot be deleted"]
    assert client.rename("Sent", "Drafts")[1] == [b"[ALREADYEXISTS] The new name is taken"]
    assert client.create("bad//name")[0] == "NO"
    client.logout()


def test_rename_inbox_moves_its_messages(imap: IMAPWorld) -> None:
    """S3: RENAME INBOX moves its messages to the new folder; INBOX stays, empty."""
    user = imap.new_user()
    imap.deliver(user, message("a"))
    imap.deliver(user, message("b"))
    client = imap.client(user)
    assert client.rename("INBOX", "Old-Inbox")[0] == "OK"
    assert client.select("INBOX") == ("OK", [b"0"])
    assert client.select("Old-Inbox") == ("OK", [b"2"])
    client.logout()


def test_selected_mailbox_cannot_be_deleted_or_renamed(imap: IMAPWorld) -> None:
    """S3: the session's selected mailbox is protected from DELETE and RENAME."""
    user = imap.new_user()
    client = imap.client(user)
    client.create("Work")
    client.select("Work")
    assert client.delete("Work")[0] == "NO"
    assert client.rename("Work", "Play")[0] == "NO"
    client.logout()


def test_international_names_are_modified_utf7(imap: IMAPWorld) -> None:
    """S3: names travel in modified UTF-7; on disk they are UTF-8 Maildir++ folders."""
    user = imap.new_user()
    client = imap.client(user)
    assert client.create('"Entw&APw-rfe/&ZeVnLIqe-"')[0] == "OK"
    assert (user.maildir / ".Entwürfe.日本語" / "cur").is_dir()
    assert listing(client, '""', '"Entw&APw-rfe/*"') == [
        b'(\\HasNoChildren) "/" "Entw&APw-rfe/&ZeVnLIqe-"'
    ]
    assert client.create('"bad&name"')[0] == "NO"
    assert client.select('"Entw&APw-rfe/&ZeVnLIqe-"')[0] == "OK"
    client.logout()


def test_list_special_cases(imap: IMAPWorld) -> None:
    """S3: empty pattern gives the delimiter; INBOX any case; unmatched gives nothing."""
    user = imap.new_user()
    client = imap.client(user)
    assert listing(client, '""', '""') == [b'(\\Noselect) "/" ""']
    assert listing(client, '""', "inbox") == [b'(\\HasNoChildren) "/" "INBOX"']
    assert listing(client, '""', "nothing*") == []
    assert listing(client, '""', "%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*x") == []
    client.logout()


def test_subscriptions(imap: IMAPWorld) -> None:
    """S3: SUBSCRIBE/UNSUBSCRIBE/LSUB, kept in the Maildir's ``subscriptions`` file; a
    subscribed child under an unsubscribed parent shows the parent as \\Noselect for '%'."""
    user = imap.new_user()
    client = imap.client(user)
    client.create("Lists/python")
    assert client.subscribe("Lists/python")[0] == "OK"
    assert client.unsubscribe("Junk")[0] == "OK"
    assert listing(client, '""', "*", command="LSUB") == [
        b'() "/" "INBOX"',
        b'() "/" "Drafts"',
        b'() "/" "Lists/python"',
        b'() "/" "Sent"',
        b'() "/" "Trash"',
    ]
    assert b'(\\Noselect) "/" "Lists"' in listing(client, '""', "%", command="LSUB")
    assert "Lists/python\n" in (user.maildir / "subscriptions").read_text()
    client.rename("Lists", "Groups")
    assert b'() "/" "Groups/python"' in listing(client, '""', "*", command="LSUB")
    client.logout()


def test_status(imap: IMAPWorld) -> None:
    """S3: STATUS reports MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN without selecting."""
    user = imap.new_user()
    imap.deliver(user, message("one"))
    imap.deliver(user, message("two"))
    client = imap.client(user)
    _, data = client.status("INBOX", "(UIDNEXT MESSAGES UNSEEN RECENT)")
    assert data == [b'"INBOX" (UIDNEXT 3 MESSAGES 2 UNSEEN 2 RECENT 2)']
    assert client.status("INBOX", "(UIDVALIDITY)")[1][0].startswith(b'"INBOX" (UIDVALIDITY ')
    assert client.status("Nowhere", "(MESSAGES)")[0] == "NO"
    with pytest.raises(imaplib.IMAP4.error):
        client.status("INBOX", "(SIZE)")
    client.logout()


# ---------------------------------------------------------------------- APPEND
def test_append_with_flags_date_and_appenduid(imap: IMAPWorld) -> None:
    """S3: APPEND stores the bytes as sent, with flags and internal date; UIDPLUS APPENDUID."""
    user = imap.new_user()
    data = message("appended") + b"line with bare LF\nand a bare CR\rend"
    raw = imap.raw()
    raw.login(user)
    raw.send(b'a APPEND Drafts (\\Draft $Todo) "05-Mar-2024 08:09:10 +0100" {%d}\r\n' % len(data))
    assert raw.line() == b"+ Ready for literal data"
    raw.send(data + b"\r\n")
    reply = raw.response(b"a")[-1]
    uidvalidity = reply.split()[3]
    assert reply == b"a OK [APPENDUID %s 1] APPEND completed" % uidvalidity
    raw.close()
    client = imap.client(user)
    client.select("Drafts")
    _, response = client.uid("FETCH", "1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    head = response[0][0]
    assert b"\\Draft" in head and b"$Todo" in head
    assert imaplib.Internaldate2tuple(head) == time.localtime(1709622550)
    assert response[0][1] == data
    client.logout()


def test_append_errors(imap: IMAPWorld) -> None:
    """S3: no such mailbox is NO [TRYCREATE] before the literal; empty messages are refused."""
    user = imap.new_user()
    raw = imap.raw()
    raw.login(user)
    raw.send(b"a APPEND Nowhere {10}\r\n")
    assert raw.line() == b"a NO [TRYCREATE] No such mailbox"
    assert raw.command(b"b", b'APPEND INBOX ""') == [b"b NO Cannot store an empty message"]
    assert raw.command(b"c", b"APPEND INBOX (\\Bogus) {1+}\r\nx")[-1].startswith(b"c BAD")
    assert raw.command(b"d", b'APPEND INBOX "not a date" {1+}\r\nx')[-1] == (
        b"d BAD Invalid date-time"
    )
    raw.close()


def test_huge_append_is_refused_before_the_continuation(imap: IMAPWorld) -> None:
    """S3 (Twisted defect): a literal over the size limit gets NO [TOOBIG] and no '+'; the
    session goes on; nothing is stored."""
    user = imap.new_user()
    raw = imap.raw()
    raw.login(user)
    raw.send(b"a APPEND INBOX (\\Seen) {53687091200}\r\n")
    assert raw.line() == b"a NO [TOOBIG] Message is over the size limit of %d bytes" % MAX_MESSAGE
    assert raw.command(b"b", b"NOOP") == [b"b OK NOOP completed"]
    raw.send(b"c APPEND INBOX {%d}\r\n" % (MAX_MESSAGE + 1))
    assert raw.line().startswith(b"c NO [TOOBIG]")
    raw.close()
    assert not list((user.maildir / "cur").iterdir())
    assert not [p for p in (user.maildir / "tmp").iterdir() if p.name.startswith("imap-literal")]


def test_huge_nonsynchronizing_literal_closes_the_connection(imap: IMAPWorld) -> None:
    """S3: a LITERAL+ literal over the limit cannot be refused politely: BYE and close."""
    user = imap.new_user()
    raw = imap.raw()
    raw.login(user)
    raw.send(b"a APPEND INBOX {53687091200+}\r\n" + b"x" * 1000)
    assert raw.line().startswith(b"* BYE [TOOBIG]")
    assert raw.closed()


def test_append_just_under_the_limit_via_literal_plus(imap: IMAPWorld) -> None:
    """S3: a big LITERAL+ APPEND within the limit is stored byte for byte (spooled to a file)."""
    user = imap.new_user()
    data = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 64 + b"\r\n") * 900
    assert len(data) < MAX_MESSAGE
    raw = imap.raw()
    raw.login(user)
    raw.send(b"a APPEND INBOX {%d+}\r\n" % len(data))
    for start in range(0, len(data), 100_000):
        raw.send(data[start : start + 100_000])
    raw.send(b"\r\n")
    assert raw.response(b"a")[-1].startswith(b"a OK [APPENDUID ")
    raw.close()
    (stored,) = list((user.maildir / "cur").iterdir())
    assert stored.read_bytes() == data
    assert not [p for p in (user.maildir / "tmp").iterdir() if p.name.startswith("imap-literal")]


def test_quota_refuses_append_before_the_continuation(imap: IMAPWorld) -> None:
    """A5: the user's disk limit (1 MB) is checked before '+'; GETQUOTAROOT reports it."""
    user = imap.new_user(disk_limit_mb=1)
    imap.deliver(user, b"Subject: filler\r\n\r\n" + b"x" * 700_000)
    raw = imap.raw()
    raw.login(user)
    raw.send(b"a APPEND INBOX {500000}\r\n")
    assert raw.line().startswith(b"a NO [OVERQUOTA] Mailbox is full")
    small = message("fits")
    raw.send(b"b APPEND INBOX {%d}\r\n" % len(small))
    assert raw.line() == b"+ Ready for literal data"
    raw.send(small + b"\r\n")
    assert raw.response(b"b")[-1].startswith(b"b OK [APPENDUID")
    reply = raw.command(b"c", b"GETQUOTAROOT INBOX")
    assert reply[0] == b'* QUOTAROOT "INBOX" ""'
    used = int(reply[1].split()[4])
    assert reply[1] == b'* QUOTA "" (STORAGE %d 1024)' % used and 680 < used < 700
    assert raw.command(b"d", b'GETQUOTA ""')[0] == reply[1]
    assert raw.command(b"e", b'SETQUOTA "" (STORAGE 1)')[-1].startswith(b"e NO [NOPERM]")
    raw.close()


def test_quota_from_the_domain_default_and_unlimited(imap: IMAPWorld) -> None:
    """A5: without a user limit the domain's default_box_mb applies; 0 means no quota root."""
    user = imap.new_user()
    client = imap.client(user)
    _, data = client.getquotaroot("INBOX")
    assert data == [[b'"INBOX"'], [None]]
    imap.sql.edit_domain("example.test", default_box_mb=5)
    try:
        _, data = client.getquotaroot("INBOX")
        assert data[1] == [b'"" (STORAGE 0 5120)']
    finally:
        imap.sql.edit_domain("example.test", default_box_mb=0)
    client.logout()
