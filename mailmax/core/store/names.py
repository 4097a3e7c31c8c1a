"""Folder names on disk and Maildir file names.

Folders: IMAP names use ``/`` between hierarchy levels ("Archive/2024"). On disk a Maildir++
folder is the directory ``.Archive.2024`` in the mailbox root, so a ``.`` inside a level is
written ``%2E`` and ``%`` itself ``%25`` ("v1.2" -> ``.v1%2E2``). INBOX (any letter case) is the
root itself.

Message files: ``<unique>[:2,<flags>]`` where the unique part may carry ``,S=<size>`` (the file
size, letting a cold index build skip a ``stat``) and starts with the delivery time in seconds.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mailmax.core.store.errors import BadFlag, BadFolderName

#: Info letters of the system flags, and of ``P`` (passed = forwarded), shown as ``$Forwarded``.
FLAG_LETTERS: dict[str, str] = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS: dict[str, str] = {letter: flag for flag, letter in FLAG_LETTERS.items()}
_SYSTEM_BY_LOWER: dict[str, str] = {flag.lower(): flag for flag in FLAG_LETTERS}
#: Longest keyword, in characters.
MAX_KEYWORD_LENGTH = 100
#: Most keywords one folder may have (each is listed in every ``* FLAGS`` response).
MAX_KEYWORDS = 256
#: Longest folder name in bytes on disk (one directory name).
MAX_FOLDER_BYTES = 240
INFO_SEPARATOR = ":2,"

_ESCAPE = re.compile(r"%2[Ee]|%25")
_SIZE = re.compile(r",S=(\d+)")
#: ``<seconds>.M<microseconds>...`` (classic Maildir) or a queue id (14 hex digits of
#: microseconds, 4 random) followed by ``-<recipient>``.
_TIME = re.compile(r"(\d{9,11})\.(?:M(\d{1,6}))?")
_QUEUE_TIME = re.compile(r"([0-9a-f]{14})[0-9a-f]{4}-")
#: Delivery times outside this range (seconds) are not believed.
SANE_TIME = (1e8, 1e11)


def is_inbox(name: str) -> bool:
    """True for "INBOX" in any letter case."""
    return name.upper() == "INBOX"


def folder_parts(name: str) -> list[str]:
    """Split an IMAP folder name into its levels; raise :class:`BadFolderName` when unusable."""
    if not isinstance(name, str) or not name:
        raise BadFolderName("the folder name is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise BadFolderName(f"folder name {name!r} contains control characters")
    parts = name.split("/")
    if any(part == "" for part in parts):
        raise BadFolderName(f"folder name {name!r} has an empty level (a leading, trailing or //)")
    return parts


def folder_dirname(name: str) -> str:
    """The directory name of a (non-INBOX) folder: ``Archive/2024`` -> ``.Archive.2024``."""
    parts = folder_parts(name)
    encoded = ".".join(part.replace("%", "%25").replace(".", "%2E") for part in parts)
    result = "." + encoded
    if len(result.encode("utf-8")) > MAX_FOLDER_BYTES:
        raise BadFolderName(f"folder name {name!r} is too long")
    return result


def folder_from_dirname(dirname: str) -> str | None:
    """The IMAP name of a folder directory (``.A.B`` -> ``A/B``), or None when it is not one."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    levels = dirname[1:].split(".")
    if any(level == "" for level in levels):
        return None
    return "/".join(_ESCAPE.sub(_unescape, level) for level in levels)


def _unescape(match: re.Match[str]) -> str:
    return "%" if match.group() == "%25" else "."


def canonical_flag(flag: str) -> str:
    """System flags in their canonical spelling; keywords unchanged. Raises on bad flags."""
    if not isinstance(flag, str) or not flag:
        raise BadFlag("empty flag")
    known = _SYSTEM_BY_LOWER.get(flag.lower())
    if known is not None:
        return known
    if flag.startswith("\\"):
        raise BadFlag(f"unknown system flag {flag!r}")
    if any(ord(ch) <= 32 or ord(ch) >= 127 or ch in '(){%*"\\]' for ch in flag):
        raise BadFlag(f"flag {flag!r} contains characters a keyword cannot have")
    if len(flag) > MAX_KEYWORD_LENGTH:
        raise BadFlag(f"a keyword may have at most {MAX_KEYWORD_LENGTH} characters")
    return flag


class ParsedName(NamedTuple):
    """A Maildir file name taken apart."""

    base: str
    letters: str  # the info flags ("" when there is no info part)
    size: int | None
    time: float | None


def base_of(filename: str) -> str:
    """The unique part of a message file name (without the info part)."""
    base, sep, _ = filename.partition(INFO_SEPARATOR)
    if not sep and ":" in base:
        return base.split(":", 1)[0]
    return base


def parse_filename(filename: str) -> ParsedName:
    """Split a message file name into unique part, info letters, size and delivery time."""
    base, sep, info = filename.partition(INFO_SEPARATOR)
    letters = info if sep else ""
    if not sep and ":" in filename:  # an info part of another version ("2" only counts)
        base = filename.split(":", 1)[0]
    match = _SIZE.search(base)
    size = int(match.group(1)) if match else None
    when: float | None = None
    if match := _TIME.match(base):
        when = int(match.group(1)) + int(match.group(2) or 0) / 1_000_000
    elif match := _QUEUE_TIME.match(base):
        when = int(match.group(1), 16) / 1_000_000
    if when is not None and not SANE_TIME[0] < when < SANE_TIME[1]:
        when = None
    return ParsedName(base, letters, size, when)


def flags_from_letters(letters: str) -> set[str]:
    """The flags named by Maildir info letters (unknown letters are ignored)."""
    return {LETTER_FLAGS[ch] for ch in letters if ch in LETTER_FLAGS}


def letters_for(flags: frozenset[str] | set[str], keep: str = "") -> str:
    """Info letters for ``flags``; letters in ``keep`` that MailMax does not manage stay."""
    letters = {FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS}
    letters.update(ch for ch in keep if ch not in LETTER_FLAGS and ch.isalpha())
    return "".join(sorted(letters))


def filename_with(base: str, letters: str) -> str:
    """A ``cur/`` file name: ``<base>:2,<letters>``."""
    return f"{base}{INFO_SEPARATOR}{letters}"
