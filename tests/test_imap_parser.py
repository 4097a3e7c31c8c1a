"""IMAP input parsing, modified UTF-7 and LIST pattern matching (S3; RFC 3501 sections 5.1, 9).

Pure functions and the command framer, tested directly.
"""

from __future__ import annotations

import time

import pytest

from mailmax.core.imap import mutf7
from mailmax.core.imap.listing import compile_pattern, matching
from mailmax.core.imap.parser import (
    STAR,
    Atom,
    Command,
    CommandReader,
    FileLiteral,
    LiteralWanted,
    ParseError,
    RawLine,
    TooLong,
    format_internaldate,
    format_set,
    parse_command,
    parse_date,
    parse_date_time,
    parse_sequence_set,
    resolve,
)


def events(reader: CommandReader) -> list:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


# ---------------------------------------------------------------------- framing
def test_reader_frames_lines_and_keeps_partial_input() -> None:
    """S3: commands are cut at CRLF or LF; a partial line waits for more bytes."""
    reader = CommandReader()
    reader.feed(b"a NOOP\r\nb CAPA")
    assert events(reader) == [Command([b"a NOOP"])]
    reader.feed(b"BILITY\nc LOGOUT\r\n")
    assert events(reader) == [Command([b"b CAPABILITY"]), Command([b"c LOGOUT"])]


def test_reader_stops_at_a_literal_until_the_server_decides() -> None:
    """S3: ``{n}`` stops the reader before the continuation; accept reads exactly n bytes."""
    reader = CommandReader()
    reader.feed(b"a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n")
    first = events(reader)
    assert first == [LiteralWanted([b"a LOGIN "], 5, True)]
    reader.accept()
    second = events(reader)
    assert second == [LiteralWanted([b"a LOGIN ", b"alice", b" "], 6, False)]
    reader.accept()
    (command,) = events(reader)
    assert command == Command([b"a LOGIN ", b"alice", b" ", b"secret", b""])
    assert parse_command(command.parts) == ("a", "LOGIN", [b"alice", b"secret"])


def test_rejected_literal_drops_the_command() -> None:
    """S3: after a refused literal the next line is a new command (the client sent no data)."""
    reader = CommandReader()
    reader.feed(b"a APPEND INBOX {99999999}\r\nb NOOP\r\n")
    assert isinstance(events(reader)[0], LiteralWanted)
    reader.reject()
    assert events(reader) == [Command([b"b NOOP"])]


def test_big_literal_goes_to_a_file(tmp_path) -> None:
    """S3: literals over 1 MiB are written to a file in the spool directory, exactly."""
    data = bytes(range(256)) * 5000
    reader = CommandReader()
    reader.feed(b"a APPEND INBOX {%d}\r\n" % len(data))
    events(reader)
    reader.accept(tmp_path)
    for start in range(0, len(data), 65536):
        reader.feed(data[start : start + 65536])
        assert events(reader) == []
    reader.feed(b"\r\n")
    (command,) = events(reader)
    literal = command.parts[1]
    assert isinstance(literal, FileLiteral) and literal.size == len(data)
    assert literal.path.read_bytes() == data
    literal.discard()
    assert list(tmp_path.iterdir()) == []


def test_clear_forgets_input_and_removes_partial_files(tmp_path) -> None:
    """S3: STARTTLS and disconnects drop buffered input and half-received literals."""
    reader = CommandReader()
    reader.feed(b"a APPEND INBOX {2000000}\r\n")
    events(reader)
    reader.accept(tmp_path)
    reader.feed(b"x" * 1000)
    events(reader)
    reader.clear()
    assert reader.pending == 0 and list(tmp_path.iterdir()) == []


def test_line_and_command_limits() -> None:
    """S3: an overlong line is reported once with its tag and skipped to its end."""
    reader = CommandReader(max_line=100, max_text=150)
    reader.feed(b"t1 NOOP " + b"x" * 200)
    assert events(reader) == [TooLong("t1", "line")]
    reader.feed(b"more\r\nt2 NOOP\r\n")
    assert events(reader) == [Command([b"t2 NOOP"])]
    reader.feed(b"t3 X {1}\r\n")
    events(reader)
    reader.accept()
    reader.feed(b"y " + b"z" * 90 + b" {1}\r\n")
    events(reader)
    reader.accept()
    reader.feed(b"y " + b"z" * 90 + b"\r\n")
    assert events(reader) == [TooLong("t3", "command")]


def test_raw_mode_returns_whole_lines() -> None:
    """S3: IDLE and AUTHENTICATE read raw lines (no literal interpretation)."""
    reader = CommandReader()
    reader.raw = True
    reader.feed(b"DONE {5}\r\n")
    assert events(reader) == [RawLine(b"DONE {5}")]


# ---------------------------------------------------------------------- tokens
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a NOOP", ("a", "NOOP", [])),
        (b'a LOGIN "al\\"ice" pass', ("a", "LOGIN", [b'al"ice', Atom("pass")])),
        (
            b"a STORE 1:* +FLAGS (\\Seen $Junk)",
            ("a", "STORE", ["1:*", "+FLAGS", ["\\Seen", "$Junk"]]),
        ),
        (b'a LIST "" %/*', ("a", "LIST", [b"", "%/*"])),
        (
            b'a fetch 1 (BODY.PEEK[HEADER.FIELDS (To "From")]<0.10>)',
            ("a", "FETCH", ["1", ['BODY.PEEK[HEADER.FIELDS (To "From")]<0.10>']]),
        ),
        (b"a STATUS INBOX ()", ("a", "STATUS", ["INBOX", []])),
        (b"a ID NIL", ("a", "ID", ["NIL"])),
    ],
)
def test_parse_command(line: bytes, expected: tuple) -> None:
    """S3: atoms, quoted strings with escapes, lists, brackets inside fetch atoms."""
    tag, name, args = parse_command([line])
    assert (tag, name, args) == expected
    if args and isinstance(expected[2][0], bytes):
        assert isinstance(args[0], bytes)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"NOOP",
        b"a",
        b"+ NOOP",
        b"a NOOP ",
        b"a LOGIN  x y",
        b'a LOGIN "x',
        b"a LIST (a b",
        b"a LIST a b)",
        b'a LOGIN "bad\\escape" y',
        b"a X " + b"(" * 40 + b")" * 40,
        b"a FETCH 1 BODY[HEADER",
        b"a X {5}",
        b"a X 1\x00",
    ],
)
def test_parse_errors(line: bytes) -> None:
    """S3: malformed commands raise ParseError (BAD), never anything else."""
    with pytest.raises(ParseError):
        parse_command([line])


# ---------------------------------------------------------------------- sequence sets, dates
def test_sequence_sets() -> None:
    """S3: sequence sets with ranges, '*' and reversed bounds; merged and ordered."""
    assert parse_sequence_set(Atom("1:3,7,9:*")) == [(1, 3), (7, 7), (9, STAR)]
    assert resolve(parse_sequence_set(Atom("5:2,*,3,20:*")), 10) == [(2, 5), (10, 20)]
    for bad in ("0", "1:", ":2", "1,,2", "a", "1:2:3", "4294967296", ""):
        with pytest.raises(ParseError):
            parse_sequence_set(Atom(bad))
    assert format_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert format_set([4, 3]) == "4,3"


def test_dates() -> None:
    """S3: APPEND date-time and SEARCH dates; INTERNALDATE output round-trips."""
    stamp = parse_date_time(b"17-Jul-1996 02:44:25 -0700")
    assert stamp == 837596665.0
    assert parse_date_time(b" 7-Jul-1996 02:44:25 +0000") == 836707465.0
    assert parse_date_time(format_internaldate(1_700_000_000.0).encode()) == 1_700_000_000.0
    assert parse_date(b"1-Feb-1994") == (1994, 2, 1)
    assert parse_date(Atom("29-feb-2024")) == (2024, 2, 29)
    for bad in (b"31-Feb-2023", b"1-Foo-2000", b"2000-01-01", b"1-Feb-94"):
        with pytest.raises(ParseError):
            parse_date(bad)
    with pytest.raises(ParseError):
        parse_date_time(b"17-Jul-1996 25:44:25 -0700")


# ---------------------------------------------------------------------- modified UTF-7
@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("a&b", "a&-b"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("😀", "&2D3eAA-"),
    ],
)
def test_modified_utf7_round_trip(name: str, wire: str) -> None:
    """S3: RFC 3501 5.1.3 examples and a character outside the BMP."""
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name


@pytest.mark.parametrize("wire", ["&Jjo", "&AGE-", "&ZeVnLIqe", "&2D0-", "&Jjo!", "é", "&U,BTFw"])
def test_modified_utf7_rejects_invalid(wire: str) -> None:
    """S3: unterminated shifts, encoded ASCII, lone surrogates and raw 8-bit are refused."""
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(wire)


# ---------------------------------------------------------------------- LIST patterns
@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%", "a", True),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("inbox", "INBOX", True),
        ("Inbox/%", "INBOX/x", True),
        ("INBOX", "INBOXES", False),
        ("*b", "ab/cb", True),
        ("%b", "ab/cb", False),
        ("a%c", "ab/c", False),
        ("%/%", "a/b", True),
        ("x%*%", "x/y", True),
        ("", "", True),
        ("a", "A", False),
    ],
)
def test_list_patterns(pattern: str, name: str, hit: bool) -> None:
    """S3: '*' crosses the hierarchy delimiter, '%' does not; INBOX is case-insensitive."""
    assert compile_pattern(pattern)(name) is hit


def test_list_pattern_cannot_backtrack_catastrophically() -> None:
    """S3 (Twisted defect): '%*%*%*...' and '*a*a*a...b' patterns stay linear."""
    names = ["a" * 200 + "/" + "a" * 39] * 200
    for pattern in ("%*" * 500 + "x", "*a" * 500 + "b", "%a" * 300 + "%b"):
        match = compile_pattern(pattern)
        started = time.process_time()
        assert not any(match(name) for name in names)
        assert time.process_time() - started < 2.0


def test_implied_parents_are_listed_for_percent() -> None:
    """S3: with '%', a parent that exists only through its children is listed (\\Noselect)."""
    names = ["INBOX", "a/b/c", "x", "Sent"]
    assert matching(names, "%") == [("INBOX", True), ("Sent", True), ("a", False), ("x", True)]
    assert matching(names, "*") == [("INBOX", True), ("Sent", True), ("a/b/c", True), ("x", True)]
    assert matching(names, "a/%") == [("a/b", False)]
