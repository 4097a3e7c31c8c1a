"""Rules as admins write them: one condition or action per line of text, checked on input.

A condition or an action is a short line, split like a shell line (quote text with spaces)::

    size > 100000                     header Subject contains word "invoice"
    date between 2027-01-01 2027-01-31   body not contains "unsubscribe"
    weekday between 2 6               attachment-name "*.exe"
    time after 18:00                  program /usr/local/bin/check %F
    folder Archive.Invoices           forward ann@example.com,bob@example.org
    note "A message with an .exe attachment was discarded"

:func:`parse_condition` and :func:`parse_action` turn a line into a :class:`Condition` or an
:class:`Action`, or raise :class:`RuleError` saying what to fix; :func:`Condition.text` gives
the line back in its one canonical spelling, which is what the directory stores.
"""

from __future__ import annotations

import datetime
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache

#: Comparisons of a size.
SIZE_OPS = ("=", "!=", "<", ">", "<=", ">=", "between")
_SIZE_SPELLINGS = {"≠": "!=", "≤": "<=", "≥": ">=", "==": "="}
#: Comparisons of a date, a time of day and a day of the week.
MOMENT_OPS = ("on", "not-on", "on-or-before", "before", "on-or-after", "after", "between")
#: Conditions that look for text.
TEXT_KINDS = ("body", "text")
MAX_TEXT = 255
MAX_LINE = 1000
MAX_ADDRESSES = 20
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,100}$")
_ADDRESS = re.compile(r"^[^@\s<>,|]+@[^@\s<>,|]+\.[^@\s<>,|]+$")
_SIZE = re.compile(r"^(\d{1,12})([kKmM]?)$")
_FOLDER_BAD = re.compile(r"[/\\*%\x00-\x1f\x7f]")
#: Placeholders of a program's arguments: the extracted attachments, or the whole message.
FILES, MESSAGE = "%F", "%M"


_PLAIN = re.compile(r"^[\w@%+=:,./<>!*?-]+$")


def _join(words: list[str]) -> str:
    """Words as one line that :func:`shlex.split` reads back; quotes only where needed."""
    return " ".join(w if _PLAIN.match(w) else shlex.quote(w) for w in words)


class RuleError(ValueError):
    """A rule, condition or action that cannot be used; the message says what to fix."""


def _words(line: str, what: str) -> list[str]:
    if not isinstance(line, str) or not line.strip():
        raise RuleError(f"an empty {what}: write one, e.g. 'size > 100000' or 'folder Junk'")
    if len(line) > MAX_LINE:
        raise RuleError(f"the {what} {line[:40]!r}... is longer than {MAX_LINE} characters")
    if "|" in line:
        raise RuleError(f"the {what} {line!r} has a '|', which rules do not allow in text")
    if any(c in line for c in "\r\n\x00"):
        raise RuleError(f"the {what} {line!r} has a line break or NUL; write it on one line")
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise RuleError(f"the {what} {line!r} cannot be read ({exc}); check its quotes") from None


def _text(value: str, what: str) -> str:
    if not value:
        raise RuleError(f"{what}: the text to look for is empty")
    if len(value) > MAX_TEXT:
        raise RuleError(f"{what}: the text is longer than {MAX_TEXT} characters")
    return value


def parse_size(token: str, what: str = "size") -> int:
    """Bytes from ``12000``, ``50k`` or ``2m``."""
    match = _SIZE.match(token)
    if not match:
        raise RuleError(f"{what}: {token!r} is not a number of bytes (e.g. 12000, 50k or 2m)")
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * factor


def parse_date(token: str) -> datetime.date:
    """A date written ``YYYY-MM-DD``."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", token):
            raise ValueError
        return datetime.date.fromisoformat(token)
    except ValueError:
        raise RuleError(f"date: {token!r} is not a date written YYYY-MM-DD") from None


def parse_time(token: str) -> datetime.time:
    """A time of day written ``HH:MM`` (24-hour clock)."""
    try:
        if not re.fullmatch(r"\d{2}:\d{2}", token):
            raise ValueError
        return datetime.time.fromisoformat(token)
    except ValueError:
        raise RuleError(f"time: {token!r} is not a time written HH:MM (00:00 to 23:59)") from None


def parse_weekday(token: str) -> int:
    """A day of the week, 1 (Sunday) to 7 (Saturday)."""
    if not re.fullmatch(r"[1-7]", token):
        raise RuleError(f"weekday: {token!r} is not a day 1 (Sunday) to 7 (Saturday)")
    return int(token)


_MOMENT_PARSERS = {"date": parse_date, "time": parse_time, "weekday": parse_weekday}


@dataclass(frozen=True)
class Condition:
    """One test of a message; ``kind`` says which, the other fields hold what it needs."""

    kind: str
    op: str = ""
    low: object = None
    high: object = None
    name: str = ""
    negate: bool = False
    word: bool = False
    values: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()

    @property
    def needs_body(self) -> bool:
        """Whether the test reads beyond the header (the body, attachments, the whole text)."""
        return self.kind in ("body", "text", "attachment-name", "attachment-type", "program")

    def text(self) -> str:
        """The condition in its canonical spelling (what :func:`parse_condition` reads)."""
        k = self.kind
        if k == "any":
            return "any"
        if k in ("size", *_MOMENT_PARSERS):
            show = _show_size if k == "size" else _show_moment
            parts = [k, self.op, show(self.low)]
            if self.op == "between":
                parts.append(show(self.high))
            return _join(parts)
        neg = ["not"] if self.negate else []
        if k == "header" and self.op == "exists":
            return _join(["header", self.name, *neg, "exists"])
        if k in ("header", *TEXT_KINDS):
            head = ["header", self.name] if k == "header" else [k]
            word = ["word"] if self.word else []
            return _join([*head, *neg, "contains", *word, self.values[0]])
        if k == "attachment-name":
            return _join([k, self.values[0]])
        if k == "attachment-type":
            return _join([k, ",".join(self.values)])
        return _join(["program", *self.argv])


def _show_size(value: object) -> str:
    return str(value)


def _show_moment(value: object) -> str:
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    return str(value)


def _compare(kind: str, words: list[str], ops: tuple[str, ...], parse) -> Condition:  # type: ignore[no-untyped-def]
    if len(words) < 3:
        raise RuleError(f"{kind}: write '{kind} OP VALUE' with OP one of {', '.join(ops)}")
    op = _SIZE_SPELLINGS.get(words[1], words[1]) if kind == "size" else words[1]
    if op not in ops:
        raise RuleError(f"{kind}: {words[1]!r} is not a comparison; use one of {', '.join(ops)}")
    count = 4 if op == "between" else 3
    if len(words) != count:
        usage = f"{kind} between LOW HIGH" if op == "between" else f"{kind} {op} VALUE"
        raise RuleError(f"{kind}: write '{usage}'")
    low = parse(words[2])
    high = parse(words[3]) if op == "between" else None
    if high is not None and high < low:
        raise RuleError(f"{kind}: the range {words[2]} to {words[3]} runs high to low; swap them")
    return Condition(kind, op=op, low=low, high=high)


def _contains(kind: str, words: list[str], name: str = "") -> Condition:
    what = f"header {name}" if name else kind
    negate = bool(words) and words[0] == "not"
    rest = words[1:] if negate else words
    if rest[:1] == ["exists"] and name:
        if len(rest) != 1:
            raise RuleError(f"{what}: nothing may follow 'exists'")
        return Condition("header", op="exists", name=name, negate=negate)
    if rest[:1] != ["contains"]:
        hint = "[not] exists' or '" if name else ""
        raise RuleError(f"{what}: write '{what} {hint}[not] contains [word] TEXT'")
    rest = rest[1:]
    word = rest[:1] == ["word"] and len(rest) > 1
    rest = rest[1:] if word else rest
    if len(rest) != 1:
        raise RuleError(f"{what}: give the text as one word or in quotes")
    return Condition(
        kind, op="contains", name=name, negate=negate, word=word, values=(_text(rest[0], what),)
    )


def _program(words: list[str]) -> tuple[str, ...]:
    if len(words) < 2:
        raise RuleError("program: write 'program /path/to/program ARGS' with %F or %M among ARGS")
    marks = [w for w in words[2:] if w in (FILES, MESSAGE)]
    if len(marks) != 1:
        raise RuleError(
            "program: give exactly one of %F (the attachments, as files in a folder) and %M"
            " (the whole message, as a file) among its arguments"
        )
    if not words[1].startswith("/"):
        raise RuleError(f"program: {words[1]!r} must be an absolute path on the allow-list")
    return tuple(words[1:])


@lru_cache(maxsize=20_000)
def parse_condition(line: str) -> Condition:
    """The :class:`Condition` written as ``line``; :class:`RuleError` says what is wrong."""
    words = _words(line, "condition")
    kind = words[0].lower()
    if kind == "any":
        if len(words) != 1:
            raise RuleError("any: nothing may follow 'any'")
        return Condition("any")
    if kind == "size":
        return _compare("size", words, SIZE_OPS, parse_size)
    if kind in _MOMENT_PARSERS:
        return _compare(kind, words, MOMENT_OPS, _MOMENT_PARSERS[kind])
    if kind == "header":
        if len(words) < 3:
            raise RuleError("header: write 'header NAME [not] exists' or '... contains TEXT'")
        name = words[1]
        if ":" in name or not _HEADER_NAME.match(name):
            raise RuleError(f"header: {name!r} is not a header name (no ':' and no spaces)")
        return _contains("header", words[2:], name)
    if kind in TEXT_KINDS:
        return _contains(kind, words[1:])
    if kind == "attachment-name":
        if len(words) != 2:
            raise RuleError("attachment-name: write 'attachment-name PATTERN' (e.g. \"*.exe\")")
        return Condition(kind, values=(_text(words[1], kind),))
    if kind == "attachment-type":
        if len(words) != 2:
            raise RuleError("attachment-type: write 'attachment-type TYPES' (e.g. .exe,.scr)")
        return Condition(kind, values=_types(words[1]))
    if kind == "program":
        return Condition("program", argv=_program(words))
    raise RuleError(
        f"{words[0]!r} is not a condition; use any, size, date, weekday, time, header, body,"
        " text, attachment-name, attachment-type or program"
    )


def _types(value: str) -> tuple[str, ...]:
    out = []
    for item in (v.strip().lower() for v in value.split(",")):
        if re.fullmatch(r"\.[a-z0-9_+-]{1,20}", item) or re.fullmatch(
            r"[a-z0-9.+-]{1,60}/(\*|[a-z0-9.+-]{1,100})", item
        ):
            out.append(item)
        else:
            raise RuleError(
                f"attachment-type: {item!r} is neither a MIME type (application/pdf, image/*)"
                " nor a file extension (.exe)"
            )
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Action:
    """One thing done to a message a rule matched; ``kind`` says which."""

    kind: str
    value: str = ""
    values: tuple[str, ...] = field(default=())

    def text(self) -> str:
        """The action in its canonical spelling (what :func:`parse_action` reads)."""
        if self.kind in ("discard", "discard-attachments", "terminate"):
            return self.kind
        if self.kind == "forward":
            return _join(["forward", ",".join(self.values)])
        if self.kind == "program":
            return _join(["program", *self.values])
        return _join([self.kind, self.value])


def check_folder(name: str) -> str:
    """``name`` if it is a folder a rule may store in (``INBOX``, ``Junk``, ``Archive.2027``)."""
    if not name or name.startswith(".") or name.endswith(".") or ".." in name:
        raise RuleError(
            f"folder: {name!r} is not a folder name; use INBOX, Junk or Archive.2027"
            " (a dot separates levels)"
        )
    if _FOLDER_BAD.search(name) or len(name) > 200:
        raise RuleError(f"folder: {name!r} has a character folders cannot have (/ \\ * %)")
    return "INBOX" if name.upper() == "INBOX" else name


@lru_cache(maxsize=20_000)
def parse_action(line: str) -> Action:
    """The :class:`Action` written as ``line``; :class:`RuleError` says what is wrong."""
    words = _words(line, "action")
    kind = words[0].lower()
    if kind in ("discard", "discard-attachments", "terminate"):
        if len(words) != 1:
            raise RuleError(f"{kind}: nothing may follow '{kind}'")
        return Action(kind)
    if kind == "folder":
        if len(words) != 2:
            raise RuleError("folder: write 'folder NAME' (quote a name with spaces)")
        return Action("folder", check_folder(words[1]))
    if kind == "forward":
        if len(words) != 2:
            raise RuleError("forward: write 'forward ADDRESS[,ADDRESS...]' (no spaces)")
        addresses = [a.strip() for a in words[1].split(",") if a.strip()]
        if not addresses or len(addresses) > MAX_ADDRESSES:
            raise RuleError(f"forward: give 1 to {MAX_ADDRESSES} addresses")
        for address in addresses:
            if not _ADDRESS.match(address):
                raise RuleError(f"forward: {address!r} is not an address like name@example.com")
        return Action("forward", values=tuple(dict.fromkeys(a.lower() for a in addresses)))
    if kind == "note":
        if len(words) != 2:
            raise RuleError("note: write 'note TEXT' (quote text with spaces)")
        return Action("note", _text(words[1], "note"))
    if kind in ("respond", "respond-file"):
        if len(words) != 2:
            raise RuleError(f"{kind}: write '{kind} {'TEXT' if kind == 'respond' else 'PATH'}'")
        return Action(kind, _text(words[1], kind))
    if kind == "program":
        return Action("program", values=_program(words))
    raise RuleError(
        f"{words[0]!r} is not an action; use folder, forward, discard, discard-attachments,"
        " respond, respond-file, note, program or terminate"
    )
