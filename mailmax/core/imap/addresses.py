"""RFC 5322 address lists as ENVELOPE needs them, read leniently from raw header bytes.

One linear pass, no backtracking: quoted strings, nested comments, angle addresses with
source routes, groups (``name: a, b;``). Malformed input (unterminated quotes, comments or
brackets, missing domains, 8-bit bytes) gives the best reading instead of an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_SPECIALS = b",:;<>@"
_BLANK = b" \t\r\n"


@dataclass(slots=True)
class Mailbox:
    """One address: display name, source route, local part, domain (raw bytes)."""

    name: bytes | None
    route: bytes | None
    local: bytes
    domain: bytes


@dataclass(slots=True)
class Group:
    """A named group of addresses."""

    name: bytes
    members: list[Mailbox] = field(default_factory=list)


def _tokens(raw: bytes) -> list[tuple[str, bytes, bytes]]:
    """``(kind, value, raw)``: kinds word, quoted, comment, angle, or a special character."""
    out: list[tuple[str, bytes, bytes]] = []
    pos, size = 0, len(raw)
    while pos < size:
        ch = raw[pos]
        if ch in _BLANK:
            pos += 1
        elif ch == 0x22:  # "
            end, value = _quoted(raw, pos)
            if end < 0:  # unterminated: the quote is just a character of a word
                start, pos = pos, pos + 1
                while pos < size and raw[pos] not in _BLANK and raw[pos] not in b'"(<,:;>@':
                    pos += 1
                out.append(("word", raw[start:pos], raw[start:pos]))
                continue
            out.append(("quoted", value, raw[pos:end]))
            pos = end
        elif ch == 0x28:  # (
            end, value = _comment(raw, pos)
            out.append(("comment", value, raw[pos:end]))
            pos = end
        elif ch == 0x3C:  # <
            close = raw.find(b">", pos + 1)
            end = size if close < 0 else close + 1
            inner = raw[pos + 1 : close if close >= 0 else size]
            out.append(("angle", inner, raw[pos:end]))
            pos = end
        elif ch in _SPECIALS:
            out.append((chr(ch), raw[pos : pos + 1], raw[pos : pos + 1]))
            pos += 1
        else:
            start = pos
            while pos < size and raw[pos] not in _BLANK and raw[pos] not in b'"(<,:;>@':
                pos += 1
            out.append(("word", raw[start:pos], raw[start:pos]))
    return out


def _quoted(raw: bytes, pos: int) -> tuple[int, bytes]:
    value = bytearray()
    pos += 1
    while pos < len(raw):
        ch = raw[pos]
        if ch == 0x5C and pos + 1 < len(raw):
            value.append(raw[pos + 1])
            pos += 2
            continue
        if ch == 0x22:
            return pos + 1, bytes(value)
        value.append(ch)
        pos += 1
    return -1, bytes(value)


def _comment(raw: bytes, pos: int) -> tuple[int, bytes]:
    depth, start = 0, pos + 1
    while pos < len(raw):
        ch = raw[pos]
        if ch == 0x5C:
            pos += 2
            continue
        if ch == 0x28:
            depth += 1
        elif ch == 0x29:
            depth -= 1
            if depth == 0:
                return pos + 1, raw[start:pos].strip()
        pos += 1
    return pos, raw[start:].strip()


def _phrase(tokens: list[tuple[str, bytes, bytes]]) -> bytes | None:
    words = [value for kind, value, _ in tokens if kind in ("word", "quoted")]
    return b" ".join(words) if words else None


def _split_addr_spec(spec: bytes) -> tuple[bytes | None, bytes, bytes]:
    """``(route, local, domain)`` of ``[@route,@route:]local@domain``."""
    route = None
    if spec.startswith(b"@") and b":" in spec:
        route, spec = spec.split(b":", 1)
    local, at, domain = spec.rpartition(b"@")
    if not at:
        return route, spec, b""
    return route, local, domain


def _mailbox(tokens: list[tuple[str, bytes, bytes]]) -> Mailbox | None:
    angle = next((i for i, t in enumerate(tokens) if t[0] == "angle"), None)
    if angle is not None:
        inner = b"".join(raw for kind, _, raw in _tokens(tokens[angle][1]) if kind != "comment")
        route, local, domain = _split_addr_spec(inner)
        name = _phrase(tokens[:angle])
        if not (local or domain):
            return None if name is None else Mailbox(name, None, b"", b"")
        return Mailbox(name, route, local, domain)
    spec = b"".join(raw for kind, _, raw in tokens if kind not in ("comment", "angle"))
    comments = [value for kind, value, _ in tokens if kind == "comment" and value]
    if not spec:
        return None
    route, local, domain = _split_addr_spec(spec)
    return Mailbox(comments[-1] if comments else None, route, local, domain)


def parse_address_list(raw: bytes) -> list[Mailbox | Group]:
    """The mailboxes and groups of an address header value."""
    items: list[Mailbox | Group] = []
    group: Group | None = None
    current: list[tuple[str, bytes, bytes]] = []

    def flush() -> None:
        if current:
            found = _mailbox(current)
            if found is not None:
                (group.members if group is not None else items).append(found)
            current.clear()

    for token in _tokens(raw):
        kind = token[0]
        if kind == ":" and group is None and not any(t[0] in ("angle", "@") for t in current):
            group = Group(_phrase(current) or b"")
            current.clear()
        elif kind == ",":
            flush()
        elif kind == ";" and group is not None:
            flush()
            items.append(group)
            group = None
        else:
            current.append(token)
    flush()
    if group is not None:
        items.append(group)
    return items
