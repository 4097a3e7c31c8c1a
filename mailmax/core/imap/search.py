"""SEARCH (RFC 3501 6.4.4): every IMAP4rev1 key, compiled once, evaluated in one pass.

The criteria are compiled into a tree of small functions. Each message is looked at once:
flags, sizes, dates and numbers come from the index; a header key reads only the message's
header; BODY and TEXT read the message and search its decoded text parts (base64 and
quoted-printable undone, charsets decoded). Strings compare case-insensitively after Unicode
case folding, so non-ASCII criteria (CHARSET UTF-8) match RFC 2047 and 8-bit headers alike.
Cost is linear in the messages and their sizes; nesting depth is bounded.
"""

from __future__ import annotations

import bisect
import email.utils
import operator
import time
from collections.abc import Callable, Collection, Sequence
from itertools import compress, count
from typing import Any

from mailmax.core.imap import mime, numbers
from mailmax.core.imap.addresses import Group, Mailbox, parse_address_list
from mailmax.core.imap.fetch import Source
from mailmax.core.imap.parser import (
    Atom,
    ParseError,
    astring,
    format_set,
    is_sequence_set,
    number,
    parse_date,
    parse_sequence_set,
    resolve,
)
from mailmax.core.store.folder import MessageInfo

#: Charsets accepted for search strings.
CHARSETS = ("US-ASCII", "UTF-8")
#: Deepest OR/NOT/parenthesis nesting accepted.
MAX_NESTING = 64


class BadCharset(Exception):
    """The client asked for a charset that is not supported."""


class Candidate:
    """One message being tested: what the index knows, and its bytes when needed."""

    __slots__ = ("_addresses", "_body", "_headers", "_open", "_source", "flags", "info", "seq")

    def __init__(
        self, seq: int, info: MessageInfo, flags: frozenset[str], open_source: Callable[[], Source]
    ) -> None:
        self.seq = seq
        self.info = info
        self.flags = flags
        self._open = open_source
        self._source: Source | None = None
        self._headers: dict[str, list[str]] | None = None
        self._addresses: dict[str, list[str]] = {}
        self._body: str | None = None

    @property
    def source(self) -> Source:
        """The message's bytes, opened the first time a key needs them."""
        if self._source is None:
            self._source = self._open()
        return self._source

    def close(self) -> None:
        """Close the message file if a key opened it."""
        if self._source is not None:
            self._source.close()

    def headers(self) -> dict[str, list[str]]:
        """Decoded, case-folded header values by lower-case field name."""
        if self._headers is None:
            found: dict[str, list[str]] = {}
            for name, raw in self.source.top().fields:
                text = mime.decode_header_text(mime.field_value(raw)).casefold()
                found.setdefault(name, []).append(text)
            self._headers = found
        return self._headers

    def addresses(self, name: str) -> list[str] | None:
        """Each ``name`` field as :func:`address_text`; None when the message has none."""
        found = self._addresses.get(name)
        if found is None:
            found = [
                address_text(mime.field_value(raw))
                for field, raw in self.source.top().fields
                if field == name
            ]
            self._addresses[name] = found
        return found or None

    def header_text(self) -> str:
        """Every header line, decoded and case-folded."""
        return "\n".join(
            f"{name}: {value}" for name, values in self.headers().items() for value in values
        )

    def body(self) -> str:
        """The decoded text of the body's text parts, case-folded."""
        if self._body is None:
            data = self.source.full()
            self._body = "\n".join(mime.body_texts(data, self.source.tree())).casefold()
        return self._body


Test = Callable[[Candidate], bool]

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_ADDRESS_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "TO": "to"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}


class Query:
    """Compiled SEARCH criteria for one selected mailbox."""

    def __init__(self, args: list[Any], *, largest_seq: int, largest_uid: int) -> None:
        self.largest_seq = largest_seq
        self.largest_uid = largest_uid
        self.charset = "UTF-8"
        #: True while every key looks at flags only: the verdict then depends on a message's
        #: flags alone and is worked out once per distinct set of flags.
        self.flags_only = True
        #: True when a key looks at ``\Recent``.
        self.uses_recent = False
        position = 0
        if args and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
            if len(args) < 2:
                raise ParseError("CHARSET needs a name")
            charset = astring(args[1]).decode("ascii", "replace").upper()
            if charset not in CHARSETS:
                raise BadCharset(charset)
            self.charset = charset
            position = 2
        if position >= len(args):
            raise ParseError("Missing search criteria")
        tests = []
        while position < len(args):
            test, position = self._key(args, position, 0)
            tests.append(test)
        self.test = _all(tests)

    def matches(self, candidate: Candidate) -> bool:
        """True when the message matches."""
        return self.test(candidate)

    # ------------------------------------------------------------------ compiling
    def _string(self, value: Any) -> str:
        return astring(value, "search string").decode("utf-8", "replace").casefold()

    def _key(self, args: list[Any], pos: int, depth: int) -> tuple[Test, int]:
        if depth > MAX_NESTING:
            raise ParseError("Search criteria nested too deeply")
        if pos >= len(args):
            raise ParseError("Missing search key")
        value = args[pos]
        pos += 1
        if isinstance(value, list):
            if not value:
                raise ParseError("Empty search list")
            tests, inner = [], 0
            while inner < len(value):
                test, inner = self._key(value, inner, depth + 1)
                tests.append(test)
            return _all(tests), pos
        if not isinstance(value, Atom):
            raise ParseError("Expected a search key")
        key = value.upper()

        def arg() -> Any:
            nonlocal pos
            if pos >= len(args):
                raise ParseError(f"{key} needs an argument")
            pos += 1
            return args[pos - 1]

        if key == "ALL":
            return (lambda c: True), pos
        if key in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[key]
            self.uses_recent = self.uses_recent or flag == "\\Recent"
            return (lambda c: (flag in c.flags) is wanted), pos
        if key == "NEW":
            self.uses_recent = True
            return (lambda c: "\\Recent" in c.flags and "\\Seen" not in c.flags), pos
        if key == "OLD":
            self.uses_recent = True
            return (lambda c: "\\Recent" not in c.flags), pos
        if key in ("KEYWORD", "UNKEYWORD"):
            word = astring(arg(), "keyword").decode("utf-8", "replace").lower()
            has = key == "KEYWORD"
            return (lambda c: any(f.lower() == word for f in c.flags) is has), pos
        if key not in ("NOT", "OR"):
            self.flags_only = False
        if key in ("LARGER", "SMALLER"):
            size = number(arg(), "size")
            if key == "LARGER":
                return (lambda c: c.info.size > size), pos
            return (lambda c: c.info.size < size), pos
        if key in _ADDRESS_KEYS:
            return self._address(_ADDRESS_KEYS[key], self._string(arg())), pos
        if key == "SUBJECT":
            return self._header("subject", self._string(arg())), pos
        if key == "HEADER":
            name = astring(arg(), "header name").decode("latin-1").lower()
            return self._header(name, self._string(arg())), pos
        if key in ("BODY", "TEXT"):
            needle = self._string(arg())
            if key == "BODY":
                return (lambda c: needle in c.body()), pos
            return (lambda c: needle in c.header_text() or needle in c.body()), pos
        if key in _DATE_KEYS:
            return _date_test(key, parse_date(arg())), pos
        if key == "UID":
            ranges = resolve(parse_sequence_set(arg()), self.largest_uid)
            return _in_ranges(ranges, lambda c: c.info.uid), pos
        if key == "NOT":
            test, pos = self._key(args, pos, depth + 1)
            return (lambda c: not test(c)), pos
        if key == "OR":
            if pos >= len(args):
                raise ParseError("OR needs two keys")
            left, pos = self._key(args, pos, depth + 1)
            if pos >= len(args):
                raise ParseError("OR needs two keys")
            right, pos = self._key(args, pos, depth + 1)
            return (lambda c: left(c) or right(c)), pos
        if is_sequence_set(value):
            ranges = resolve(parse_sequence_set(value), self.largest_seq)
            return _in_ranges(ranges, lambda c: c.seq), pos
        raise ParseError(f"Unknown search key {key[:40]}")

    def _header(self, name: str, needle: str) -> Test:
        def test(c: Candidate) -> bool:
            values = c.headers().get(name)
            if values is None:
                return False
            return not needle or any(needle in v for v in values)

        return test

    def _address(self, name: str, needle: str) -> Test:
        def test(c: Candidate) -> bool:
            values = c.addresses(name)
            if values is None:
                return False
            return not needle or any(needle in v for v in values)

        return test


_UID = operator.itemgetter(0)
_FLAGS = operator.itemgetter(2)
_FILENAME = operator.itemgetter(4)
#: What a recent message has in its flags besides its stored ones.
RECENT = frozenset({"\\Recent"})
_NO_FLAGS: frozenset[str] = frozenset()


def _no_source() -> Source:
    raise AssertionError("a SEARCH on flags only never reads a message")


class _Verdicts(dict[Any, bool]):
    """Whether a query on flags only matches, by set of flags (or by flags and whether the
    message is recent): worked out the first time a set is looked up. A lookup of a known
    set stays in C."""

    def __init__(self, query: Query, sample: MessageInfo, with_recent: bool) -> None:
        super().__init__()
        self._query = query
        self._sample = sample
        self._with_recent = with_recent

    def __missing__(self, key: Any) -> bool:
        flags = key
        if self._with_recent:  # (flags, recent)
            flags = key[0] | RECENT if key[1] else key[0]
        matched = self[key] = self._query.matches(Candidate(0, self._sample, flags, _no_source))
        return matched


def flag_hits(query: Query, view: Sequence[MessageInfo], recent: Collection[int]) -> Any:
    """Whether a query on flags only (:attr:`Query.flags_only`) matches each message of
    ``view`` (an iterator of booleans, one per message); ``recent`` holds the UIDs that are
    ``\\Recent`` for the session.

    The criteria are evaluated once per distinct set of flags; the messages are looked at
    by iterators that run in C, so that no Python object is made per message.
    """
    if not view:
        return iter(())
    with_recent = bool(query.uses_recent and recent)
    verdict = _Verdicts(query, view[0], with_recent)
    if with_recent:
        flags: Any = zip(map(_FLAGS, view), map(recent.__contains__, map(_UID, view)), strict=True)
        empty_matches = verdict[_NO_FLAGS, False] or verdict[_NO_FLAGS, True]
    else:
        flags = map(_FLAGS, view)
        empty_matches = verdict[_NO_FLAGS]
    hits = map(verdict.__getitem__, flags)
    if empty_matches:
        # a message another session expunged keeps its place, with no flags and no file,
        # until the expunge is reported: never an answer
        hits = map(operator.and_, hits, map(operator.truth, map(_FILENAME, view)))
    return hits


def flag_matches(
    query: Query, view: Sequence[MessageInfo], recent: Collection[int], uid: bool
) -> list[int]:
    """The sequence numbers (UIDs when ``uid``) of the messages :func:`flag_hits` picks."""
    return list(compress(map(_UID, view) if uid else count(1), flag_hits(query, view, recent)))


def search_flags(
    query: Query, view: Sequence[MessageInfo], recent: Collection[int], uid: bool
) -> str:
    """:func:`flag_matches` as the text of a ``* SEARCH`` response; the numbers' text comes
    from a shared table (:mod:`mailmax.core.imap.numbers`)."""
    hits = flag_hits(query, view, recent)
    if uid:
        return numbers.join(compress(map(_UID, view), hits), view[-1].uid if view else 0)
    return numbers.join_selected(hits, len(view))


def search_reply(text: str) -> bytes:
    """The ``* SEARCH`` response line whose numbers are ``text``."""
    if not text:
        return b"* SEARCH"
    return b"* SEARCH " + text.encode("ascii")


#: The RETURN options of ESEARCH (RFC 4731), in the order their results are written.
RETURN_OPTIONS = ("MIN", "MAX", "COUNT", "ALL")


def return_options(args: list[Any]) -> tuple[list[str] | None, list[Any]]:
    """Split ``RETURN (options)`` (ESEARCH, RFC 4731) off the SEARCH arguments: the options
    asked for (ALL for an empty list), and the criteria. Without RETURN: None and ``args``."""
    if not args or not isinstance(args[0], Atom) or args[0].upper() != "RETURN":
        return None, args
    if len(args) < 2 or not isinstance(args[1], list):
        raise ParseError("RETURN needs a parenthesized list of options")
    wanted = set()
    for option in args[1]:
        if not isinstance(option, Atom) or option.upper() not in RETURN_OPTIONS:
            raise ParseError(f"Unknown RETURN option {str(option)[:40]}")
        wanted.add(option.upper())
    return [option for option in RETURN_OPTIONS if option in (wanted or {"ALL"})], args[2:]


def esearch_reply(tag: str, uid: bool, options: list[str], found: list[int]) -> bytes:
    """The ``* ESEARCH`` response (RFC 4731) for ``found`` (ascending): what ``options``
    ask for; MIN, MAX and ALL are left out when nothing matched."""
    parts = [f'* ESEARCH (TAG "{tag}")']
    if uid:
        parts.append("UID")
    for option in options:
        if option == "COUNT":
            parts.append(f"COUNT {len(found)}")
        elif not found:
            continue
        elif option == "MIN":
            parts.append(f"MIN {found[0]}")
        elif option == "MAX":
            parts.append(f"MAX {found[-1]}")
        else:
            parts.append(f"ALL {format_set(found)}")
    return " ".join(parts).encode("ascii")


def address_text(raw: bytes) -> str:
    """An address field as FROM, TO, CC and BCC search it: the addresses its envelope holds.

    RFC 3501 (6.4.4) matches these keys against the envelope's address structure, so the
    text is rebuilt from the parsed addresses, each ``name <local@domain>`` (the name
    RFC 2047-decoded) and groups as ``name: members;``. Comments, folding and spacing inside
    an address are gone: ``<user (c)@ (c) example.org>`` is found as ``user@example.org``.
    Case-folded, like every search string.
    """
    out: list[str] = []
    for item in parse_address_list(raw):
        if isinstance(item, Group):
            members = ", ".join(_mailbox_text(m) for m in item.members)
            out.append(f"{mime.decode_header_text(item.name)}: {members};")
        else:
            out.append(_mailbox_text(item))
    if not out:
        return mime.decode_header_text(raw).casefold()
    return ", ".join(out).casefold()


def _mailbox_text(item: Mailbox) -> str:
    spec = item.local + b"@" + item.domain if item.domain else item.local
    address = mime.decode_header_text(spec)
    if item.name is None:
        return address
    return f"{mime.decode_header_text(item.name)} <{address}>"


def _all(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    return lambda c: all(t(c) for t in tests)


def _in_ranges(ranges: list[tuple[int, int]], get: Callable[[Candidate], int]) -> Test:
    def test(c: Candidate) -> bool:
        value = get(c)
        return any(lo <= value <= hi for lo, hi in ranges)

    if len(ranges) > 8:
        starts = [lo for lo, _ in ranges]

        def test(c: Candidate) -> bool:
            value = get(c)
            index = bisect.bisect_right(starts, value) - 1
            return index >= 0 and value <= ranges[index][1]

    return test


def _sent_date(c: Candidate) -> tuple[int, int, int]:
    values = c.headers().get("date")
    if values:
        parsed = email.utils.parsedate_tz(values[0])
        if parsed is not None and 1 <= parsed[1] <= 12 and 1 <= parsed[2] <= 31:
            return parsed[0], parsed[1], parsed[2]
    return time.localtime(c.info.internaldate)[:3]


def _date_test(key: str, day: tuple[int, int, int]) -> Test:
    if key.startswith("SENT"):

        def when(c: Candidate) -> tuple[int, int, int]:
            return _sent_date(c)

        key = key[4:]
    else:

        def when(c: Candidate) -> tuple[int, int, int]:
            return time.localtime(c.info.internaldate)[:3]

    if key == "BEFORE":
        return lambda c: when(c) < day
    if key == "ON":
        return lambda c: when(c) == day
    return lambda c: when(c) >= day
