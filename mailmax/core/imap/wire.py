"""IMAP output syntax: strings, literals, NIL, flag lists (RFC 3501 section 4)."""

from __future__ import annotations

from collections.abc import Iterable

from mailmax.core.imap import mutf7

#: Quoted strings are used up to this length; longer text goes out as a literal.
MAX_QUOTED = 1024
_QUOTABLE = frozenset(range(0x01, 0x80)) - {0x0A, 0x0D}


def literal(data: bytes) -> bytes:
    """``{n}\\r\\n`` followed by the bytes."""
    return b"{%d}\r\n" % len(data) + data


def string(data: bytes | str) -> bytes:
    """A quoted string when that can hold ``data``, else a literal."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if len(data) <= MAX_QUOTED and all(b in _QUOTABLE for b in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(data: bytes | str | None) -> bytes:
    """NIL for None, else :func:`string`."""
    return b"NIL" if data is None else string(data)


def mailbox(name: str) -> bytes:
    """A mailbox name on the wire: modified UTF-7, quoted."""
    return string(mutf7.encode(name))


_flag_cache: dict[frozenset[str], bytes] = {}


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen \\Flagged $Label)`` with system flags first, each group sorted."""
    key = flags if isinstance(flags, frozenset) else frozenset(flags)
    cached = _flag_cache.get(key)
    if cached is None:
        ordered = sorted(key, key=lambda f: (not f.startswith("\\"), f.lower()))
        cached = ("(" + " ".join(ordered) + ")").encode("utf-8", "replace")
        if len(_flag_cache) > 4096:
            _flag_cache.clear()
        _flag_cache[key] = cached
    return cached
