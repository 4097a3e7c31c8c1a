"""IMAP4rev1 conformance over real sockets: the defects an independent conformance suite
(Dovecot's imaptest) found, each as the client sees it (S3; RFC 3501).
"""

from __future__ import annotations

import re

import pytest

from tests.test_imap_harness import IMAPWorld, MailUser, RawClient, message, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


def logged_in(imap: IMAPWorld, user: MailUser, select: bytes | None = b"INBOX") -> RawClient:
    raw = imap.raw()
    raw.login(user)
    if select is not None:
        reply = raw.command(b"s", b"SELECT " + select)
        assert reply[-1] == b"s OK [READ-WRITE] SELECT completed", reply
    return raw


def ok(raw: RawClient, text: bytes) -> list[bytes]:
    """The untagged lines of a command that must succeed."""
    reply = raw.command(b"t", text)
    assert reply[-1].startswith(b"t OK "), reply
    return reply[:-1]


# ---------------------------------------------------------------------- FETCH item names
MIXED = (
    b"From: ann@example.org\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"first part\r\n"
    b"--b--\r\n"
)


@pytest.mark.parametrize(
    ("item", "label", "expected"),
    [
        (b"body.peek[header]", b"BODY[HEADER]", MIXED[: MIXED.index(b"\r\n\r\n") + 4]),
        (b"Body.Peek[text]", b"BODY[TEXT]", MIXED[MIXED.index(b"\r\n\r\n") + 4 :]),
        (b"body.peek[]<0.4>", b"BODY[]<0>", b"From"),
        (b"body.peek[1.mime]", b"BODY[1.MIME]", b"Content-Type: text/plain\r\n\r\n"),
        (b"body.peek[header.fields (subject)]", b"BODY[HEADER.FIELDS (subject)]", None),
    ],
)
def test_fetch_section_items_in_any_case(
    imap: IMAPWorld, item: bytes, label: bytes, expected: bytes | None
) -> None:
    """S3 (RFC 3501 section 9: names are case-insensitive): ``body.peek[...]`` as real
    clients send it is answered like ``BODY.PEEK[...]``, not with BAD."""
    user = imap.new_user()
    imap.deliver(user, MIXED)
    raw = logged_in(imap, user)
    text = b"\r\n".join(ok(raw, b"FETCH 1 (" + item + b")"))
    assert label + b" {" in text, text
    if expected is not None:
        assert b"}\r\n" + expected + b")" in text, text
    else:
        assert b"}\r\nSubject: parts\r\n\r\n)" in text, text
    assert b"\\Seen" not in b"\r\n".join(ok(raw, b"FETCH 1 FLAGS"))
    raw.close()


def test_lower_case_body_sets_seen(imap: IMAPWorld) -> None:
    """S3: ``body[text]`` (not peek) in lower case fetches and sets \\Seen."""
    user = imap.new_user()
    imap.deliver(user, message("lower", "the text\r\n"))
    raw = logged_in(imap, user)
    text = b"\r\n".join(ok(raw, b"FETCH 1 body[text]"))
    assert b"BODY[TEXT] {10}\r\nthe text\r\n" in text, text
    assert b"\\Seen" in text
    raw.close()


# ---------------------------------------------------------------------- mailbox atoms
#: Every ATOM-CHAR that is not a letter, "[" included ("$" is not doubled on the wire).
ATOM = b"!#$&'+,-.0123456789:;<=>?@^_`|[}"


def test_left_bracket_in_unquoted_mailbox_name(imap: IMAPWorld) -> None:
    """S3 (RFC 3501 section 9: "[" is an ATOM-CHAR): a mailbox atom holding "[" is a name,
    not an unterminated fetch section."""
    user = imap.new_user()
    raw = logged_in(imap, user, select=None)
    reply = raw.command(b"a", b"SELECT " + ATOM)
    assert reply[-1].startswith(b"a NO "), reply
    assert ok(raw, b'LIST "" ' + ATOM + b"%*") == []
    ok(raw, b"CREATE a[b")
    assert ok(raw, b'LIST "" a[*') == [b'* LIST (\\HasNoChildren) "/" "a[b"']
    reply = raw.command(b"s", b"SELECT a[b")
    assert reply[-1] == b"s OK [READ-WRITE] SELECT completed", reply
    ok(raw, b"CLOSE")
    reply = raw.command(b"r", b"RENAME a[b c]d")
    assert reply[-1].startswith(b"r OK"), reply
    assert ok(raw, b'LIST "" *]*') == [b'* LIST (\\HasNoChildren) "/" "c]d"']
    raw.close()


def test_unterminated_fetch_section_is_still_bad(imap: IMAPWorld) -> None:
    """S3: a fetch section without its "]" stays a syntax error."""
    user = imap.new_user()
    imap.deliver(user, message())
    raw = logged_in(imap, user)
    reply = raw.command(b"f", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)")
    assert reply[-1].startswith(b"f BAD "), reply
    raw.close()


# ---------------------------------------------------------------------- SEARCH addresses
ADDRESSED = [
    b"From: user-from@domain.org\r\nTo: user-to@domain.org\r\n\r\nbody1\r\n",
    b"From: RealFrom <user-from@domain.org>\r\nTo: RealTo <user-to@domain.org>\r\n\r\nbody2\r\n",
    b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: <user-to@domain.org>\r\n\r\nb3\r\n",
    b"From: user-from@domain.org (RealFrom)\r\nTo: user-to@domain.org (RealTo)\r\n\r\nbody4\r\n",
    b"From: user-from1@domain.org, user-from2@domain.org\r\n\r\nbody5\r\n",
    b"From: RealFrom <user-from@domain.org>\r\n"
    b"To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
    b"  groupname2: groupuser3@domain.org;\r\n\r\nbody6\r\n",
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@domain.org>\r\nTo: groupname:;\r\n\r\nbody7\r\n",
]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (b"FROM user-from@domain.org", b"1 2 3 4 6"),
        (b"FROM user-from@DOMAIN.org", b"1 2 3 4 6"),
        (b"FROM realfrom", b"2 4 6"),
        (b"FROM ser-fro", b"1 2 3 4 5 6"),
        (b"FROM comment", b""),
        (b'FROM "realfrom <user-from@"', b"2 4 6"),
        (b"FROM user-from2", b"5"),
        (b"FROM j\xc3\xb6rg", b"7"),
        (b"TO user-to@domain.org", b"1 2 3 4"),
        (b"TO realto", b"2 4"),
        (b"TO groupname", b"6 7"),
        (b"TO groupname2", b"6"),
        (b"TO groupuser3", b"6"),
        (b"TO groupuser4", b""),
        (b'TO ""', b"1 2 3 4 6 7"),
    ],
)
def test_search_matches_parsed_addresses(imap: IMAPWorld, criteria: bytes, expected: bytes) -> None:
    """S3 (RFC 3501 6.4.4: FROM/TO/CC/BCC search the envelope's addresses): comments and
    spacing inside an address do not hide it, a trailing comment counts as the name."""
    user = imap.new_user()
    for data in ADDRESSED:
        imap.deliver(user, data)
    raw = logged_in(imap, user)
    charset = b"CHARSET UTF-8 " if not criteria.isascii() else b""
    found = ok(raw, b"SEARCH " + charset + criteria)
    assert found == [b"* SEARCH" + (b" " + expected if expected else b"")], found
    raw.close()


# ---------------------------------------------------------------------- new keywords
FLAGS_LINE = re.compile(rb"\* FLAGS \(([^)]*)\)$")
PERMANENT_LINE = re.compile(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)\]")


def announced(lines: list[bytes]) -> list[tuple[str, set[bytes]]]:
    """The FLAGS/PERMANENTFLAGS/FETCH lines in order, with the flags each names."""
    out = []
    for line in lines:
        if match := FLAGS_LINE.match(line):
            out.append(("FLAGS", set(match.group(1).split())))
        elif match := PERMANENT_LINE.match(line):
            out.append(("PERMANENTFLAGS", set(match.group(1).split())))
        elif b" FETCH " in line:
            flags = line.split(b"FLAGS (", 1)[1].split(b")", 1)[0]
            out.append(("FETCH", set(flags.split())))
    return out


SYSTEM = {b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"}


def test_store_of_a_new_keyword_announces_it_first(imap: IMAPWorld) -> None:
    """S3 (RFC 3501 7.2.6): a STORE adding a keyword the mailbox did not have sends ``* FLAGS``
    and ``* OK [PERMANENTFLAGS]`` before the FETCH that shows it; a known one does not."""
    user = imap.new_user()
    imap.deliver(user, message("one"))
    imap.deliver(user, message("two"))
    raw = logged_in(imap, user)
    events = announced(ok(raw, b"STORE 1:2 +FLAGS ($hello $World)"))
    new = {b"$hello", b"$World"}
    assert events[0] == ("FLAGS", SYSTEM | new)
    assert events[1] == ("PERMANENTFLAGS", SYSTEM | new | {b"\\*"})
    assert [kind for kind, _ in events[2:]] == ["FETCH", "FETCH"]
    assert all(new <= flags for _, flags in events[2:])
    events = announced(ok(raw, b"STORE 1 FLAGS ($hello)"))
    assert [kind for kind, _ in events] == ["FETCH"]
    # NIL is a keyword like any other atom
    events = announced(ok(raw, b"STORE 1 +FLAGS NIL"))
    assert [kind for kind, _ in events] == ["FLAGS", "PERMANENTFLAGS", "FETCH"]
    assert events[0][1] == SYSTEM | new | {b"NIL"}
    raw.close()
    # a new session learns them all from SELECT
    raw = imap.raw()
    raw.login(user)
    reply = raw.command(b"s", b"SELECT INBOX")
    assert announced(reply)[0] == ("FLAGS", SYSTEM | new | {b"NIL"}), reply
    raw.close()


def test_keyword_stored_by_another_session_is_announced(imap: IMAPWorld) -> None:
    """S3: a keyword another session adds comes with ``* FLAGS`` before the FETCH reporting
    it; one stored silently comes with ``* FLAGS`` before a later FETCH shows it."""
    user = imap.new_user()
    imap.deliver(user, message("one"))
    imap.deliver(user, message("two"))
    first, second = logged_in(imap, user), logged_in(imap, user)
    ok(first, b"STORE 2 +FLAGS ($Other)")
    events = announced(ok(second, b"NOOP"))
    assert [kind for kind, _ in events] == ["FLAGS", "PERMANENTFLAGS", "FETCH"], events
    assert b"$Other" in events[0][1] and b"$Other" in events[2][1]
    ok(first, b"STORE 1 +FLAGS.SILENT ($Quiet)")
    events = announced(ok(first, b"FETCH 1:2 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])"))
    assert [kind for kind, _ in events] == ["FLAGS", "PERMANENTFLAGS", "FETCH", "FETCH"]
    assert events[0][1] == SYSTEM | {b"$Other", b"$Quiet"}
    ok(first, b"STORE 2 +FLAGS.SILENT ($Meta)")
    events = announced(ok(first, b"UID FETCH 1:* FLAGS"))
    assert [kind for kind, _ in events] == ["FETCH", "FLAGS", "PERMANENTFLAGS", "FETCH"]
    assert events[1][1] == SYSTEM | {b"$Other", b"$Quiet", b"$Meta"}
    assert announced(ok(first, b"FETCH 1:2 FLAGS")) == [
        ("FETCH", {b"\\Recent", b"$Quiet"}),
        ("FETCH", {b"\\Recent", b"$Other", b"$Meta"}),
    ]
    first.close()
    second.close()


def test_keywords_per_mailbox_are_bounded(imap: IMAPWorld) -> None:
    """S3: a mailbox holds at most 256 keywords of at most 100 characters; once full,
    PERMANENTFLAGS drops ``\\*`` (RFC 3501 7.1) and a new keyword gets NO [LIMIT] from STORE,
    APPEND and COPY, changing nothing."""
    user = imap.new_user()
    imap.deliver(user, message("one"))
    imap.deliver(user, message("two"))
    raw = logged_in(imap, user)
    reply = raw.command(b"k", b"STORE 1 +FLAGS ($" + b"x" * 100 + b")")
    assert reply[-1].startswith(b"k BAD "), reply
    many = b" ".join(b"$k%d" % n for n in range(256))
    events = announced(ok(raw, b"STORE 1 +FLAGS (" + many + b")"))
    assert [kind for kind, _ in events] == ["FLAGS", "PERMANENTFLAGS", "FETCH"]
    assert len(events[0][1]) == len(SYSTEM) + 256
    assert events[1][1] == events[0][1]  # no \* any more
    reply = raw.command(b"n", b"STORE 2 +FLAGS ($k7 $new)")
    assert reply[-1].startswith(b"n NO [LIMIT] "), reply
    assert ok(raw, b"FETCH 2 FLAGS") == [b"* 2 FETCH (FLAGS (\\Recent))"]
    assert ok(raw, b"STORE 2 +FLAGS ($k7)") == [b"* 2 FETCH (FLAGS (\\Recent $k7))"]
    reply = raw.command(b"a", b"APPEND INBOX ($new) {6}\r\nHi\r\n\r\n")
    assert reply[-1].startswith(b"a NO [LIMIT] "), reply
    ok(raw, b"CREATE Other")
    ok(raw, b"APPEND Other ($own) {6}\r\nHi\r\n\r\n")
    reply = raw.command(b"c", b"COPY 1 Other")
    assert reply[-1].startswith(b"c NO [LIMIT] "), reply
    ok(raw, b"COPY 2 Other")
    raw.close()
    raw = imap.raw()
    raw.login(user)
    reply = raw.command(b"s", b"SELECT INBOX")
    events = announced(reply)
    assert events[1][1] == events[0][1] and b"\\*" not in events[1][1], reply
    reply = raw.command(b"o", b"SELECT Other")
    assert announced(reply)[1][1] == SYSTEM | {b"$own", b"$k7", b"\\*"}, reply
    raw.close()
