"""SEARCH on flags only: the answer follows every change of the mailbox (this session's STORE
and EXPUNGE, other sessions' flags, expunges and new mail), over real sockets; and the fast
evaluation agrees with asking every message, placeholders of foreign expunges included
(S3, RFC 3501 6.4.4).
"""

from __future__ import annotations

import imaplib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.imap import numbers
from mailmax.core.imap.parser import Atom
from mailmax.core.imap.search import Candidate, Query, search_flags, search_reply
from mailmax.core.store.view import MessageInfo
from tests.test_imap_harness import IMAPWorld, MailUser, message, world

FLAG_SETS = [
    "()",
    "(\\Seen)",
    "(\\Flagged)",
    "(\\Seen \\Flagged)",
    "(\\Deleted)",
    "($Work \\Answered)",
]


@pytest.fixture(scope="module")
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


@pytest.fixture
def user(imap: IMAPWorld) -> MailUser:
    """A mailbox with one message per entry of FLAG_SETS (UIDs 1 to 6), none recent."""
    user = imap.new_user()
    client = imap.client(user)
    for number, flags in enumerate(FLAG_SETS, 1):
        assert client.append("INBOX", flags, None, message(f"m{number}"))[0] == "OK"
    client.select("INBOX")  # takes \\Recent: what comes later is the only recent mail
    client.logout()
    return user


@pytest.fixture
def session(imap: IMAPWorld, user: MailUser) -> Iterator[imaplib.IMAP4]:
    client = imap.client(user)
    client.select("INBOX")
    yield client
    client.logout()


def search(client: imaplib.IMAP4, *criteria: str, uid: bool = False) -> list[int]:
    if uid:
        typ, data = client.uid("SEARCH", *criteria)
    else:
        typ, data = client.search(None, *criteria)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def noop(client: imaplib.IMAP4) -> None:
    assert client.noop()[0] == "OK"


def test_search_follows_own_store_and_expunge(session: imaplib.IMAP4) -> None:
    """S3: right after this session's STORE and EXPUNGE, SEARCH answers the new state."""
    client = session
    assert search(client, "FLAGGED", "UNSEEN") == [3]
    client.store("1:*", "+FLAGS.SILENT", "(\\Flagged)")
    assert search(client, "FLAGGED", "UNSEEN") == [1, 3, 5, 6]
    assert search(client, "FLAGGED", "UNSEEN", uid=True) == [1, 3, 5, 6]
    client.store("1:*", "-FLAGS.SILENT", "(\\Flagged)")
    assert search(client, "FLAGGED") == []
    assert search(client, "UNKEYWORD", "$Work", "UNSEEN") == [1, 3, 5]
    client.store("1,2", "+FLAGS.SILENT", "(\\Deleted)")
    assert search(client, "DELETED") == [1, 2, 5]
    assert client.expunge()[0] == "OK"
    assert search(client, "DELETED") == []
    assert search(client, "UNSEEN") == [1, 3]
    assert search(client, "UNSEEN", uid=True) == [3, 6]
    assert search(client, "ALL") == [1, 2, 3]
    assert search(client, "NOT", "ALL") == []


def test_search_follows_other_sessions(
    imap: IMAPWorld, user: MailUser, session: imaplib.IMAP4
) -> None:
    """S3: flags, new mail and expunges from another session or a delivery are in the next
    SEARCH once the session has been told of them."""
    client = session
    assert search(client, "FLAGGED") == [3, 4]
    other = imap.client(user)
    try:
        other.select("INBOX")
        other.store("1", "+FLAGS.SILENT", "(\\Flagged)")
        other.store("4", "-FLAGS.SILENT", "(\\Flagged)")
        noop(client)
        assert search(client, "FLAGGED") == [1, 3]
        imap.deliver(user, message("fresh"))
        noop(client)
        assert search(client, "UNSEEN", "UNFLAGGED", "UNDELETED") == [6, 7]
        assert search(client, "NEW") == [7]
        assert search(client, "RECENT", "UNFLAGGED") == [7]
        other.store("1,2", "+FLAGS.SILENT", "(\\Deleted)")
        assert other.expunge()[0] == "OK"
        noop(client)
        assert search(client, "FLAGGED") == [1]
        assert search(client, "FLAGGED", uid=True) == [3]
        assert search(client, "ALL", uid=True) == [3, 4, 6, 7]
        assert search(client, "DELETED") == []
        assert search(client, "NEW") == [4]
    finally:
        other.logout()


def test_search_of_a_large_mailbox_in_one_line(imap: IMAPWorld) -> None:
    """S3: a SEARCH matching thousands of messages answers every one, in order, once."""
    user = imap.new_user()
    for sub in ("new", "cur", "tmp"):
        (user.maildir / sub).mkdir(parents=True, exist_ok=True)
    data = message("bulk")
    for index in range(3000):
        info = "S" if index % 3 == 0 else ""
        name = f"1700000000.M{index:06d}P1.test,S={len(data)}:2,{info}"
        (user.maildir / "cur" / name).write_bytes(data)
    client = imap.client(user)
    try:
        client.select("INBOX")
        expected = [n for n in range(1, 3001) if (n - 1) % 3]
        assert search(client, "UNSEEN") == expected
        client.store("1:*", "+FLAGS.SILENT", "(\\Flagged)")
        assert search(client, "FLAGGED", "UNSEEN") == expected
        assert search(client, "SEEN", "UNFLAGGED") == []
    finally:
        client.logout()


def test_esearch_return_options(imap: IMAPWorld, user: MailUser) -> None:
    """S3 (RFC 4731): SEARCH RETURN answers one ESEARCH line with what was asked for."""
    raw = imap.raw()
    raw.login(user)
    assert b" ESEARCH " in raw.command(b"c", b"CAPABILITY")[0]
    assert raw.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    for command, answer in (
        (b"SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN", b"MIN 1 MAX 6 COUNT 4 ALL 1,3,5:6"),
        (b"SEARCH RETURN (all count) UNSEEN", b"COUNT 4 ALL 1,3,5:6"),
        (b"SEARCH RETURN () FLAGGED", b"ALL 3:4"),
        (b"UID SEARCH RETURN (MAX) SEEN", b"UID MAX 4"),
        (b"UID SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD $Nothing", b"UID COUNT 0"),
        (b"SEARCH RETURN (MIN) KEYWORD $Nothing", b""),
        (b"SEARCH RETURN (MIN COUNT) SUBJECT m5", b"MIN 5 COUNT 1"),
        (b"SEARCH RETURN (ALL) CHARSET UTF-8 OR SUBJECT m2 SUBJECT m6", b"ALL 2,6"),
    ):
        reply = raw.command(b"t1", command)
        expected = b'* ESEARCH (TAG "t1")' + (b" " + answer if answer else b"")
        assert reply == [expected, b"t1 OK SEARCH completed"], command
    assert raw.command(b"p", b"SEARCH UNSEEN") == [b"* SEARCH 1 3 5 6", b"p OK SEARCH completed"]
    for bad in (b"SEARCH RETURN (SAVE) ALL", b"SEARCH RETURN MIN ALL", b"SEARCH RETURN"):
        reply = raw.command(b"b", bad)
        assert len(reply) == 1 and reply[0].startswith(b"b BAD "), (bad, reply)
    raw.close()


# ---------------------------------------------------------------------- evaluation
FOLDER = Path("/nonexistent")


def _info(uid: int, flags: set[str], filename: str = "cur/x") -> MessageInfo:
    return MessageInfo(uid, 100, frozenset(flags), 0.0, filename and f"{filename}{uid}", FOLDER)


def _view() -> tuple[MessageInfo, ...]:
    """Every combination of three flags and a keyword, twice, and two foreign expunges
    (no flags, no file), with gaps in the UIDs."""
    choices = ["\\Seen", "\\Flagged", "\\Deleted", "$Work"]
    combos = [
        set(c) for size in range(len(choices) + 1) for c in itertools.combinations(choices, size)
    ]
    view = [_info(uid * 3, flags) for uid, flags in enumerate(combos * 2, 1)]
    view.insert(4, _info(13, set(), filename=""))
    view.append(_info(200, set(), filename=""))
    return tuple(view)


QUERIES = [
    "FLAGGED UNSEEN",
    "UNSEEN",
    "UNFLAGGED UNDELETED UNSEEN",
    "NOT SEEN",
    "OR DELETED KEYWORD $Work",
    "UNKEYWORD $work",
    "RECENT",
    "NEW",
    "OLD UNSEEN",
    "ALL",
    "NOT ALL",
]


def _expected(query: Query, view: tuple[MessageInfo, ...], recent: set[int], uid: bool) -> str:
    """The answer asking every message in turn."""
    found = []
    for position, info in enumerate(view, 1):
        flags = info.flags | {"\\Recent"} if info.uid in recent else info.flags
        if info.filename and query.matches(Candidate(position, info, flags, _unused)):
            found.append(info.uid if uid else position)
    return " ".join(map(str, found))


def _unused() -> None:
    raise AssertionError("not read")


@pytest.mark.parametrize("criteria", QUERIES)
@pytest.mark.parametrize("uid", [False, True])
@pytest.mark.parametrize("recent", [set(), {3, 13, 30, 60}])
def test_flag_search_agrees_with_every_message(criteria: str, uid: bool, recent: set) -> None:
    """S3: one verdict per set of flags gives what asking every message gives; a message
    expunged elsewhere and not yet reported is never an answer."""
    view = _view()
    args = [Atom(word) for word in criteria.split()]
    query = Query(args, largest_seq=len(view), largest_uid=view[-1].uid)
    assert query.flags_only
    assert search_flags(query, view, recent, uid) == _expected(query, view, recent, uid)


def test_numbers_beyond_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3: numbers above the shared table's bound are written out just the same."""
    view = _view()
    query = Query([Atom("UNSEEN")], largest_seq=len(view), largest_uid=view[-1].uid)
    small = search_flags(query, view, set(), False), search_flags(query, view, set(), True)
    monkeypatch.setattr(numbers, "LIMIT", 5)
    assert (search_flags(query, view, set(), False), search_flags(query, view, set(), True)) == (
        small
    )
    assert numbers.join([1, 7, 123456], 123456) == "1 7 123456"
    assert search_reply("") == b"* SEARCH"
    assert search_reply("2 5") == b"* SEARCH 2 5"
