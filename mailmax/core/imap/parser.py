"""IMAP4rev1 command input: framing, tokens, sequence sets and dates (RFC 3501 section 9).

:class:`CommandReader` cuts the byte stream into commands. A line ending in ``{n}`` (or
``{n+}``, LITERAL+) announces a literal: the reader stops with a :class:`LiteralWanted` event
and waits until the server decides (the server checks sizes and quotas *before* it sends the
``+`` continuation), then reads exactly ``n`` bytes into memory or a file. Every size is
bounded: line length, command length, literal count and nesting depth.

:func:`tokenize` turns a command's parts into values: :class:`Atom` (a ``str``; flags, sequence
sets, list patterns and fetch items such as ``BODY.PEEK[HEADER.FIELDS (To)]<0.100>`` are
atoms), ``bytes`` for quoted strings and literals, :class:`FileLiteral` for a literal kept on
disk, and ``list`` for parenthesised lists.
"""

from __future__ import annotations

import calendar
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

#: Longest line of a command (RFC 7162 asks for at least 8192).
MAX_LINE = 65536
#: Most bytes of command text (literals not counted) in one command.
MAX_COMMAND_TEXT = 256 * 1024
#: Most literals in one command.
MAX_LITERALS = 64
#: Deepest parenthesis nesting accepted.
MAX_DEPTH = 32
#: Literals above this size are written to a file instead of memory.
MEMORY_LITERAL = 1024 * 1024

_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_TAG = re.compile(rb"[\x21\x23-\x24\x26-\x27\x2c-\x5b\x5e-\x7a\x7c\x7e]{1,64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,9}")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DATE_TIME = re.compile(
    r"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([-+])([0-9]{4})$"
)
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})$")


class ParseError(ValueError):
    """The command is malformed; the message is the text of the BAD reply."""


class Atom(str):
    """An IMAP atom (anything that was not a string, a literal or a list)."""

    __slots__ = ()


@dataclass(slots=True)
class FileLiteral:
    """A literal big enough to be kept in a file; the owner deletes :attr:`path`."""

    path: Path
    size: int

    def discard(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------- framing events
class Command(NamedTuple):
    """A complete command: text parts with the literals between them."""

    parts: list[Any]


class LiteralWanted(NamedTuple):
    """A line ended with ``{size}``: the server must :meth:`CommandReader.accept` or reject."""

    parts: list[Any]
    size: int
    sync: bool


class RawLine(NamedTuple):
    """A line read in raw mode (IDLE's DONE, an AUTHENTICATE response)."""

    line: bytes


class TooLong(NamedTuple):
    """A line or command exceeded a limit; ``tag`` is the tag when it could be read."""

    tag: str
    what: str


Event = Command | LiteralWanted | RawLine | TooLong


@dataclass(slots=True)
class _Sink:
    size: int
    memory: bytearray = field(default_factory=bytearray)
    file: Any = None
    path: Path | None = None
    written: int = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.file is not None:
            self.file.write(data)
        else:
            self.memory += data
        self.written += len(data)

    def finish(self) -> bytes | FileLiteral:
        if self.file is not None:
            self.file.close()
            assert self.path is not None
            return FileLiteral(self.path, self.size)
        return bytes(self.memory)

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close()
            assert self.path is not None
            self.path.unlink(missing_ok=True)


class CommandReader:
    """Frames the client's byte stream into :data:`Event` values (see the module docstring)."""

    def __init__(self, max_line: int = MAX_LINE, max_text: int = MAX_COMMAND_TEXT) -> None:
        self.max_line = max_line
        self.max_text = max_text
        self.buffer = bytearray()
        #: When True, the next lines are returned whole as :class:`RawLine`.
        self.raw = False
        self._parts: list[Any] = []
        self._text = 0
        self._state = "line"  # line | wanted | literal | discard
        self._sink: _Sink | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self.buffer += data

    @property
    def pending(self) -> int:
        """Bytes received but not consumed yet."""
        return len(self.buffer)

    @property
    def mid_command(self) -> bool:
        """True while part of a command has arrived and the rest has not."""
        return bool(self.buffer or self._parts) or self._state != "line"

    @property
    def in_literal(self) -> bool:
        """True while the bytes of an accepted literal are being read."""
        return self._state == "literal"

    def clear(self) -> None:
        """Forget everything received and any command in progress (STARTTLS, shutdown)."""
        self.buffer.clear()
        self._reset()

    def _reset(self) -> None:
        if self._sink is not None:
            self._sink.abandon()
        for part in self._parts:
            if isinstance(part, FileLiteral):
                part.discard()
        self._parts = []
        self._text = 0
        self._sink = None
        self._need = 0
        self._state = "line"

    def accept(self, spool_dir: Path | None = None) -> None:
        """Read the announced literal (into a file in ``spool_dir`` when it is big)."""
        if self._state != "wanted":
            raise RuntimeError("no literal is waiting for a decision")
        sink = _Sink(self._need)
        if spool_dir is not None and self._need > MEMORY_LITERAL:
            spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="imap-literal-", dir=spool_dir)
            sink.file, sink.path = os.fdopen(fd, "wb"), Path(name)
        self._sink = sink
        self._state = "literal"

    def reject(self) -> None:
        """Drop the command whose literal was announced (its sender was told NO or BAD)."""
        self._reset()

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive (or a decision is made)."""
        buffer = self.buffer
        while True:
            if self._state == "wanted":
                return None
            if self._state == "literal":
                assert self._sink is not None
                if not buffer and self._need:
                    return None
                take = min(self._need, len(buffer))
                if take:
                    self._sink.write(memoryview(buffer)[:take])
                    del buffer[:take]
                    self._need -= take
                if self._need:
                    return None
                self._parts.append(self._sink.finish())
                self._sink = None
                self._state = "line"
                continue
            newline = buffer.find(b"\n")
            if self._state == "discard":
                if newline < 0:
                    buffer.clear()
                    return None
                del buffer[: newline + 1]
                self._state = "line"
                continue
            if newline < 0:
                if len(buffer) > self.max_line:
                    tag = self._tag_of(bytes(buffer[:80]))
                    self._reset()
                    buffer.clear()
                    self._state = "discard"
                    return TooLong(tag, "line")
                return None
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.raw and not self._parts:
                return RawLine(line)
            if len(line) > self.max_line:
                tag = self._tag_of(self._first_text() or line)
                self._reset()
                return TooLong(tag, "line")
            self._text += len(line)
            if self._text > self.max_text:
                tag = self._tag_of(self._first_text() or line)
                self._reset()
                return TooLong(tag, "command")
            match = _LITERAL_AT_END.search(line)
            if match is None:
                parts, self._parts, self._text = [*self._parts, line], [], 0
                return Command(parts)
            if len(self._parts) // 2 >= MAX_LITERALS:
                tag = self._tag_of(self._first_text() or line)
                self._reset()
                return TooLong(tag, "literals")
            self._parts.append(line[: match.start()])
            self._need = int(match.group(1))
            self._state = "wanted"
            return LiteralWanted(list(self._parts), self._need, not match.group(2))

    def _first_text(self) -> bytes:
        return self._parts[0] if self._parts else b""

    @staticmethod
    def _tag_of(line: bytes) -> str:
        match = _TAG.match(line)
        if match and line[match.end() : match.end() + 1] == b" " and match.group() != b"+":
            return match.group().decode("ascii")
        return "*"


def command_head(parts: list[Any]) -> tuple[str, str]:
    """``(tag, command name upper-cased)`` from a command's first part; ParseError if absent."""
    first = parts[0] if parts else b""
    if not isinstance(first, bytes):
        raise ParseError("Missing tag")
    match = _TAG.match(first)
    if match is None or match.group() == b"+":
        raise ParseError("Missing or invalid tag")
    tag = match.group().decode("ascii")
    rest = first[match.end() :]
    if not rest.startswith(b" "):
        raise ParseError("Missing command")
    name_end = 1
    while name_end < len(rest) and rest[name_end : name_end + 1] not in (b" ", b""):
        name_end += 1
    name = rest[1:name_end]
    if not name.isalpha():
        raise ParseError("Missing or invalid command name")
    return tag, name.decode("ascii").upper()


# ---------------------------------------------------------------------- tokens
_ATOM_END = frozenset(b' ()"{')
#: Fetch items whose ``[section]`` may hold spaces, lists and quoted strings. Anywhere else
#: ``[`` and ``]`` are ordinary characters of an atom or astring (RFC 3501 section 9).
_SECTION_ITEMS = frozenset({b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"})
_LONGEST_SECTION_ITEM = max(map(len, _SECTION_ITEMS))
_QUOTED_SPECIAL = {ord("\\"), ord('"')}


class _Tokenizer:
    def __init__(self, parts: list[Any], start: int, max_depth: int) -> None:
        self.parts = parts
        self.index = 0
        self.text: bytes = parts[0]
        self.pos = start
        self.max_depth = max_depth

    def at_part_end(self) -> bool:
        return self.pos >= len(self.text)

    def tokens(self) -> list[Any]:
        stack: list[list[Any]] = [[]]
        while True:
            if self.at_part_end():
                if self.index + 1 < len(self.parts):
                    literal = self.parts[self.index + 1]
                    if self.text and self.text[-1:] not in (b" ", b"("):
                        raise ParseError("A literal must follow a space or '('")
                    stack[-1].append(literal)
                    self.index += 2
                    self.text = self.parts[self.index] if self.index < len(self.parts) else b""
                    self.pos = 0
                    self._after_value()
                    continue
                if len(stack) > 1:
                    raise ParseError("Unbalanced parentheses")
                return stack[0]
            ch = self.text[self.pos]
            if ch == 0x20:
                raise ParseError("Extra space")
            if ch == 0x28:  # (
                if len(stack) > self.max_depth:
                    raise ParseError("Too deeply nested")
                new: list[Any] = []
                stack[-1].append(new)
                stack.append(new)
                self.pos += 1
                if not self.at_part_end() and self.text[self.pos] == 0x29:
                    continue  # empty list
                continue
            if ch == 0x29:  # )
                if len(stack) == 1:
                    raise ParseError("Unbalanced parentheses")
                stack.pop()
                self.pos += 1
                self._after_value()
                continue
            if ch == 0x22:  # "
                stack[-1].append(self._quoted())
            elif ch == 0x7B:  # {
                raise ParseError("A literal must end its line")
            else:
                stack[-1].append(self._atom())
            self._after_value()

    def _after_value(self) -> None:
        if self.at_part_end():
            return
        ch = self.text[self.pos]
        if ch == 0x29:
            return
        if ch != 0x20:
            raise ParseError("Expected a space between arguments")
        self.pos += 1
        if self.at_part_end() and self.index + 1 >= len(self.parts):
            raise ParseError("Trailing space")
        if not self.at_part_end() and self.text[self.pos] in (0x20, 0x29):
            raise ParseError("Extra space")

    def _quoted(self) -> bytes:
        text, pos = self.text, self.pos + 1
        out = bytearray()
        while pos < len(text):
            ch = text[pos]
            if ch == 0x22:
                self.pos = pos + 1
                return bytes(out)
            if ch == 0x5C:
                pos += 1
                if pos >= len(text) or text[pos] not in _QUOTED_SPECIAL:
                    raise ParseError("Invalid escape in a quoted string")
                ch = text[pos]
            out.append(ch)
            pos += 1
        raise ParseError("Unterminated quoted string")

    def _atom(self) -> Atom:
        text, pos, start = self.text, self.pos, self.pos
        while pos < len(text):
            ch = text[pos]
            if (
                ch == 0x5B
                and pos - start <= _LONGEST_SECTION_ITEM
                and text[start:pos].upper() in _SECTION_ITEMS
            ):
                pos = self._bracket_end(pos)
                continue
            if ch in _ATOM_END or ch < 0x20 or ch == 0x7F:
                break
            pos += 1
        if pos == start:
            raise ParseError("Expected an argument")
        raw = text[start:pos]
        self.pos = pos
        try:
            return Atom(raw.decode("ascii"))
        except UnicodeDecodeError:
            return Atom(raw.decode("utf-8", "surrogateescape"))

    def _bracket_end(self, pos: int) -> int:
        text, depth, quoted = self.text, 0, False
        pos += 1
        while pos < len(text):
            ch = text[pos]
            if quoted:
                if ch == 0x5C:
                    pos += 1
                elif ch == 0x22:
                    quoted = False
            elif ch == 0x22:
                quoted = True
            elif ch == 0x28:
                depth += 1
                if depth > self.max_depth:
                    raise ParseError("Too deeply nested")
            elif ch == 0x29:
                depth -= 1
            elif ch == 0x5D and depth <= 0:
                return pos + 1
            pos += 1
        raise ParseError("Missing ']'")


def tokenize(parts: list[Any], start: int = 0, max_depth: int = MAX_DEPTH) -> list[Any]:
    """The values of a command's text from byte ``start`` of its first part on."""
    if not parts:
        return []
    return _Tokenizer(parts, start, max_depth).tokens()


def parse_command(parts: list[Any]) -> tuple[str, str, list[Any]]:
    """``(tag, COMMAND, arguments)`` of a complete command; raises :class:`ParseError`."""
    tag, name = command_head(parts)
    first: bytes = parts[0]
    start = len(tag) + 1 + len(name)
    if start < len(first) or len(parts) > 1:
        if first[start : start + 1] != b" ":
            raise ParseError("Expected a space after the command name")
        start += 1
        if start >= len(first) and len(parts) == 1:
            raise ParseError("Trailing space")
    return tag, name, tokenize(parts, start)


def is_nil(value: Any) -> bool:
    """True for the atom NIL."""
    return isinstance(value, Atom) and value.upper() == "NIL"


def astring(value: Any, what: str = "argument") -> bytes:
    """An astring argument (atom, quoted string or literal) as bytes."""
    if isinstance(value, Atom):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    raise ParseError(f"Expected a string for the {what}")


def number(value: Any, what: str = "number") -> int:
    """A non-negative number (at most 19 digits) given as an atom."""
    if isinstance(value, Atom) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    raise ParseError(f"Invalid {what}")


# ---------------------------------------------------------------------- sequence sets
SequenceSet = list[tuple[int, int]]
#: ``*`` in a sequence set, resolved later.
STAR = -1


def parse_sequence_set(value: Any) -> SequenceSet:
    """``1:3,7,9:*`` as ``[(1, 3), (7, 7), (9, STAR)]`` (bounds unordered, STAR unresolved)."""
    if not isinstance(value, Atom) or not value:
        raise ParseError("Invalid sequence set")
    result: SequenceSet = []
    for item in value.split(","):
        bounds = item.split(":")
        if len(bounds) > 2 or not item:
            raise ParseError("Invalid sequence set")
        numbers = []
        for bound in bounds:
            if bound == "*":
                numbers.append(STAR)
            elif _NUMBER.fullmatch(bound) and int(bound) <= 0xFFFFFFFF:
                numbers.append(int(bound))
            else:
                raise ParseError("Invalid sequence set")
        result.append((numbers[0], numbers[-1]))
    return result


def is_sequence_set(value: Any) -> bool:
    """True when ``value`` reads as a sequence set."""
    try:
        parse_sequence_set(value)
    except ParseError:
        return False
    return True


def resolve(seqset: SequenceSet, largest: int) -> list[tuple[int, int]]:
    """Ordered, merged, inclusive ranges with ``*`` replaced by ``largest``."""
    ranges = []
    for lo, hi in seqset:
        lo = largest if lo == STAR else lo
        hi = largest if hi == STAR else hi
        if lo > hi:
            lo, hi = hi, lo
        ranges.append((lo, hi))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def format_set(values: list[int]) -> str:
    """A compact sequence set for ascending-or-not numbers, in the given order (COPYUID)."""
    out: list[str] = []
    start = prev = None
    for value in values:
        if prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = value
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)


def parse_date_time(value: Any) -> float:
    """An APPEND date-time (``"17-Jul-1996 02:44:25 -0700"``) as a POSIX timestamp."""
    raw = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    match = _DATE_TIME.match(raw)
    if match is None:
        raise ParseError("Invalid date-time")
    day, mon, year, hh, mm, ss, sign, zone = match.groups()
    try:
        month = _MONTHS.index(mon.lower()) + 1
        stamp = calendar.timegm(
            (int(year), month, int(day.strip()), int(hh), int(mm), int(ss), 0, 0, 0)
        )
        time.gmtime(stamp)
    except (ValueError, OverflowError):
        raise ParseError("Invalid date-time") from None
    if not (1 <= int(day.strip()) <= 31 and int(hh) < 24 and int(mm) < 60 and int(ss) < 61):
        raise ParseError("Invalid date-time")
    offset = (int(zone[:2]) * 60 + int(zone[2:])) * 60
    return float(stamp - offset if sign == "+" else stamp + offset)


def parse_date(value: Any) -> tuple[int, int, int]:
    """A SEARCH date (``1-Feb-1994``, quoted or not) as ``(year, month, day)``."""
    raw = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    match = _DATE.match(raw)
    if match is None:
        raise ParseError("Invalid date")
    day, mon, year = match.groups()
    if mon.lower() not in _MONTHS:
        raise ParseError("Invalid date")
    month = _MONTHS.index(mon.lower()) + 1
    try:
        calendar.timegm((int(year), month, int(day), 0, 0, 0, 0, 0, 0))
        if int(day) > calendar.monthrange(int(year), month)[1] or int(day) < 1:
            raise ValueError
    except ValueError:
        raise ParseError("Invalid date") from None
    return int(year), month, int(day)


def format_internaldate(stamp: float) -> str:
    """``"17-Jul-1996 02:44:25 -0700"`` in the server's local time zone."""
    local = time.localtime(stamp)
    offset = local.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    month = _MONTHS[local.tm_mon - 1].capitalize()
    return (
        f"{local.tm_mday:02d}-{month}-{local.tm_year:04d} "
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
        f"{sign}{offset // 60:02d}{offset % 60:02d}"
    )
