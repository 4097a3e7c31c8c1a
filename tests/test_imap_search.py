"""SEARCH over real sockets: every IMAP4rev1 key, OR/NOT/parentheses, charsets, non-ASCII
(S3; RFC 3501 6.4.4). Regression for Twisted's defect: SEARCH broken (non-ASCII, keys) and
quadratic.
"""

from __future__ import annotations

import base64
import imaplib
from collections.abc import Iterator

import pytest

from tests.test_imap_harness import IMAPWorld, MailUser, message, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


MESSAGES = [
    # 1: plain, seen, old date
    (
        "(\\Seen)",
        '"01-Jan-2024 10:00:00 +0000"',
        message("Hello world", "The quick brown fox.\r\n", "Alice <alice@example.org>"),
    ),
    # 2: 8-bit subject, encoded-word sender, base64 UTF-8 body
    (
        "(\\Flagged \\Answered)",
        '"15-Feb-2024 12:00:00 +0000"',
        (
            "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
            "To: bob@example.test\r\n"
            "Cc: Carol <carol@example.test>\r\n"
            "Subject: Grüße aus Köln\r\n"
            "Date: Thu, 15 Feb 2024 12:00:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "\r\n" + _b64("Die Größe ist MÜDE.\n") + "\r\n"
        ).encode("utf-8"),
    ),
    # 3: multipart, quoted-printable, a priority header, big
    (
        "(\\Draft)",
        '"20-Feb-2024 09:30:00 +0000"',
        (
            b"From: reports@example.org\r\n"
            b"To: bob@example.test\r\n"
            b"Subject: Monthly report\r\n"
            b"X-Priority: 1\r\n"
            b"Date: Tue, 20 Feb 2024 09:30:00 +0000\r\n"
            b"Content-Type: multipart/mixed; boundary=b1\r\n"
            b"\r\n--b1\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Caf=E9 revenue up=\r\n 12 percent\r\n"
            b"--b1\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + b"A" * 3000 + b"\r\n--b1--\r\n"
        ),
    ),
    # 4: deleted, sent date far back, bcc
    (
        "(\\Deleted $Work)",
        '"01-Mar-2024 00:00:00 +0000"',
        message(
            "Old news",
            "nothing here\r\n",
            "dave@example.org",
            Bcc="secret@example.org",
            Date="Wed, 15 Mar 2023 08:00:00 +0000",
        ),
    ),
]


def _mailbox(imap: IMAPWorld) -> Iterator[tuple[imaplib.IMAP4, MailUser]]:
    user = imap.new_user()
    client = imap.client(user)
    for flags, when, data in MESSAGES:
        assert client.append("INBOX", flags, when, data)[0] == "OK"
    client.select("INBOX")
    yield client, user
    client.logout()


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[imaplib.IMAP4, MailUser]]:
    """The four messages, read-only for the tests using it."""
    yield from _mailbox(world(request, "plain"))


@pytest.fixture
def mailbox(imap: IMAPWorld) -> Iterator[tuple[imaplib.IMAP4, MailUser]]:
    """The four messages, for a test that changes them."""
    yield from _mailbox(imap)


def search(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = client.search(None, *criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (("ALL",), [1, 2, 3, 4]),
        (("SEEN",), [1]),
        (("UNSEEN",), [2, 3, 4]),
        (("FLAGGED",), [2]),
        (("UNFLAGGED",), [1, 3, 4]),
        (("ANSWERED",), [2]),
        (("UNANSWERED",), [1, 3, 4]),
        (("DRAFT",), [3]),
        (("UNDRAFT",), [1, 2, 4]),
        (("DELETED",), [4]),
        (("UNDELETED",), [1, 2, 3]),
        (("KEYWORD", "$Work"), [4]),
        (("KEYWORD", "$work"), [4]),
        (("UNKEYWORD", "$Work"), [1, 2, 3]),
        (("FROM", "alice"), [1]),
        (("FROM", "ALICE@EXAMPLE"), [1]),
        (("TO", "bob@example.test"), [1, 2, 3, 4]),
        (("CC", "carol"), [2]),
        (("BCC", "secret"), [4]),
        (("SUBJECT", "report"), [3]),
        (("SUBJECT", '"hello world"'), [1]),
        (("HEADER", "X-Priority", "1"), [3]),
        (("HEADER", "X-Priority", '""'), [3]),
        (("HEADER", "X-Missing", '""'), []),
        (("BODY", "quick"), [1]),
        (("BODY", '"revenue up 12"'), [3]),
        (("BODY", "Monthly"), []),
        (("TEXT", "Monthly"), [3]),
        (("TEXT", "brown"), [1]),
        (("LARGER", "3000"), [3]),
        (("SMALLER", "100"), []),
        (("SMALLER", "1000"), [1, 2, 4]),
        (("SINCE", "15-Feb-2024"), [2, 3, 4]),
        (("BEFORE", "15-Feb-2024"), [1]),
        (("ON", "20-Feb-2024"), [3]),
        (("SENTBEFORE", "1-Jan-2024"), [4]),
        (("SENTON", "15-Feb-2024"), [2]),
        (("SENTSINCE", "20-Feb-2024"), [3]),
        (("1,3:4",), [1, 3, 4]),
        (("*",), [4]),
        (("UID", "2:3"), [2, 3]),
        (("NOT", "SEEN"), [2, 3, 4]),
        (("OR", "SEEN", "DRAFT"), [1, 3]),
        (("OR", "FROM", "alice", "(SUBJECT report LARGER 2000)"), [1, 3]),
        (("(FLAGGED", "ANSWERED)"), [2]),
        (("NOT", "(OR", "SEEN", "DELETED)"), [2, 3]),
        (("UNSEEN", "UNDELETED", "NOT", "DRAFT"), [2]),
        (("OR", "OR", "SEEN", "FLAGGED", "DELETED"), [1, 2, 4]),
    ],
)
def test_search_keys(shared: tuple[imaplib.IMAP4, MailUser], criteria, expected) -> None:
    """S3: each IMAP4rev1 search key, alone and combined."""
    client, _ = shared
    assert search(client, *criteria) == expected


def test_uid_search_returns_uids(imap: IMAPWorld, mailbox) -> None:
    """S3: UID SEARCH answers with UIDs (different from sequence numbers after an expunge)."""
    client, _ = mailbox
    client.expunge()
    assert search(client, "ALL") == [1, 2, 3]
    _, data = client.uid("SEARCH", "ALL")
    assert data[0].split() == [b"1", b"2", b"3"]
    client.store("1", "+FLAGS", "(\\Deleted)")
    client.expunge()
    _, data = client.uid("SEARCH", "UNSEEN")
    assert data[0].split() == [b"2", b"3"]
    assert search(client, "UNSEEN") == [1, 2]


def test_recent_new_old(imap: IMAPWorld) -> None:
    """S3: RECENT/NEW/OLD follow the session's \\Recent messages."""
    user = imap.new_user()
    imap.deliver(user, message("old one"))
    first = imap.client(user)
    first.select("INBOX")
    first.logout()
    imap.deliver(user, message("new one"))
    client = imap.client(user)
    client.select("INBOX")
    assert search(client, "RECENT") == [2]
    assert search(client, "NEW") == [2]
    assert search(client, "OLD") == [1]
    client.store("2", "+FLAGS", "(\\Seen)")
    assert search(client, "NEW") == []
    client.logout()


def test_utf8_search_strings(imap: IMAPWorld, shared) -> None:
    """S3 (Twisted defect): CHARSET UTF-8 literals match 8-bit headers, RFC 2047 words and
    base64 bodies, case-insensitively."""
    _, user = shared
    raw = imap.raw()
    raw.login(user)
    raw.command(b"s", b"SELECT INBOX")
    for key, text in (
        (b"SUBJECT", "grüße"),
        (b"FROM", "jörg müller"),
        (b"BODY", "größe ist müde"),
        (b"TEXT", "KÖLN"),
    ):
        data = text.encode()
        raw.send(b"a SEARCH CHARSET UTF-8 %s {%d}\r\n" % (key, len(data)))
        assert raw.line() == b"+ Ready for literal data"
        raw.send(data + b"\r\n")
        assert raw.response(b"a") == [b"* SEARCH 2", b"a OK SEARCH completed"], key
    data = "café".encode()
    raw.send(b"b SEARCH CHARSET UTF-8 BODY {%d+}\r\n" % len(data) + data + b"\r\n")
    assert raw.response(b"b") == [b"* SEARCH 3", b"b OK SEARCH completed"]
    reply = raw.command(b"c", b"SEARCH CHARSET KOI8-R SUBJECT x")
    assert reply == [b"c NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset"]
    raw.close()


def test_search_syntax_errors(shared) -> None:
    """S3: malformed criteria are BAD, never a server error."""
    client, _ = shared
    for criteria in (
        ("FOO",),
        ("OR", "SEEN"),
        ("SINCE", "yesterday"),
        ("LARGER", "big"),
        ("HEADER", "Subject"),
        ("NOT",),
        ("()",),
    ):
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            client.search(None, *criteria)
    deep = "NOT " * 60 + "SEEN"
    assert search(client, deep) == [1]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        client.search(None, "NOT " * 80 + "SEEN")


def test_search_many_messages_in_one_pass(imap: IMAPWorld) -> None:
    """S3 (Twisted defect): a body search over a thousand messages answers in one pass."""
    user = imap.new_user()
    new = user.maildir / "new"
    for sub in ("new", "cur", "tmp"):
        (user.maildir / sub).mkdir(parents=True, exist_ok=True)
    for index in range(1000):
        data = message(f"note {index}", f"word{index % 10} payload\r\n")
        (new / f"1700000000.M{index:06d}P1.test,S={len(data)}").write_bytes(data)
    client = imap.client(user)
    client.select("INBOX")
    hits = search(client, "OR", "BODY", "word3", "SUBJECT", '"note 999"')
    assert hits == sorted({i + 1 for i in range(1000) if i % 10 == 3} | {1000})
    client.logout()
