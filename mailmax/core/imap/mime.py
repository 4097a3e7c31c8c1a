"""The structure of a stored message, read from its raw bytes (RFC 2045/2046, RFC 3501 7.4.2).

:func:`parse` finds every part's header and body *offsets* in the message exactly as stored,
so FETCH serves sections byte for byte from the file (never rebuilt from parsed headers), and
builds ENVELOPE and BODYSTRUCTURE from those bytes. Nothing here trusts the message: 8-bit and
malformed headers, missing boundaries, unterminated multiparts and absurd nesting all give an
answer (limits: :data:`MAX_DEPTH`, :data:`MAX_PARTS`), never an exception.

Only parameter parsing (``email.message``), RFC 2047 decoding (``email.header``) and transfer
decoding (``base64``/``binascii``) come from the standard library.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.header
import email.message
import email.utils
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailmax.core.imap import wire
from mailmax.core.imap.addresses import Group, Mailbox, parse_address_list

#: Deepest multipart / message nesting parsed; deeper content is one opaque part.
MAX_DEPTH = 40
#: Most parts parsed in one message; later content stays inside its enclosing part.
MAX_PARTS = 5000

_WS = b" \t"
_COMMENT_TAIL = re.compile(r"\s*\([^()]*\)\s*$")


@dataclass(slots=True)
class Part:
    """One entity: offsets into the message bytes and its content type."""

    start: int
    header_end: int
    body_start: int
    end: int
    fields: list[tuple[str, bytes]]
    maintype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)
    message: Part | None = None  # the encapsulated message of a message/rfc822 part

    def field(self, name: str) -> bytes | None:
        """The unfolded value of the first field called ``name`` (lower case), or None."""
        for key, raw in self.fields:
            if key == name:
                return field_value(raw)
        return None

    def param(self, name: str) -> str | None:
        """A Content-Type parameter."""
        for key, value in self.params:
            if key == name:
                return value
        return None


# ---------------------------------------------------------------------- headers
def split_header(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """``(header_end, body_start)``: where the fields end and where the body begins."""
    end = len(data) if end is None else end
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    if data.startswith(b"\n", start, end):
        return start, start + 1
    crlf = data.find(b"\n\r\n", start, end)
    lf = data.find(b"\n\n", start, end)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 1, crlf + 3
    if lf >= 0:
        return lf + 1, lf + 2
    return end, end


def header_fields(block: bytes) -> list[tuple[str, bytes]]:
    """``(lower-case name, raw bytes with folding and line ends)`` for each field of a block.

    A line that is neither a field nor a continuation gets the name ``""``.
    """
    fields: list[tuple[str, bytes]] = []
    pos, size = 0, len(block)
    while pos < size:
        nl = block.find(b"\n", pos)
        line_end = size if nl < 0 else nl + 1
        if block[pos] in _WS and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + block[pos:line_end])
        else:
            colon = block.find(b":", pos, line_end)
            raw_name = block[pos:colon].rstrip(_WS) if colon > 0 else b""
            fields.append((raw_name.decode("latin-1").lower(), block[pos:line_end]))
        pos = line_end
    return fields


def field_value(raw: bytes) -> bytes:
    """The value of a raw field: after the colon, unfolded, surrounding blanks removed."""
    colon = raw.find(b":")
    value = raw[colon + 1 :] if colon >= 0 else raw
    return value.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"").strip(_WS)


def _params(name: str, value: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The lower-cased main value and the parameters of a structured MIME field."""
    holder = email.message.Message()
    holder[name] = value.decode("latin-1")
    try:
        raw = holder.get_params(header=name) or [("", "")]
    except Exception:
        return "", []
    head = raw[0][0].strip().lower()
    params: list[tuple[str, str]] = []
    for key, item in raw[1:]:
        key = key.strip().lower()
        if not key or item in ("", '""'):
            continue
        if isinstance(item, tuple):
            try:
                text = email.utils.collapse_rfc2231_value(item, errors="replace")
            except LookupError:
                text = str(item[2])
        else:
            text = _COMMENT_TAIL.sub("", item) if not item.startswith('"') else item
            text = text.encode("latin-1", "replace").decode("utf-8", "replace")
        params.append((key.rstrip("*"), text))
    return head, params


# ---------------------------------------------------------------------- structure
class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse(data: bytes) -> Part:
    """The structure of a whole message."""
    return _parse(data, 0, len(data), 0, _Budget(), ("text", "plain"))


def parse_header_only(data: bytes) -> Part:
    """The top-level part of a message whose bytes may stop after the header."""
    header_end, body_start = split_header(data)
    return Part(0, header_end, body_start, len(data), header_fields(data[:header_end]))


def _parse(
    data: bytes, start: int, end: int, depth: int, budget: _Budget, default: tuple[str, str]
) -> Part:
    budget.parts += 1
    header_end, body_start = split_header(data, start, end)
    part = Part(start, header_end, body_start, end, header_fields(data[start:header_end]))
    part.maintype, part.subtype = default
    ctype = part.field("content-type")
    if ctype is not None:
        head, params = _params("content-type", ctype)
        main, slash, sub = head.partition("/")
        if slash and main.strip() and sub.strip() and " " not in head:
            part.maintype, part.subtype, part.params = main.strip(), sub.strip(), params
        elif params:
            part.params = [p for p in params if p[0] == "charset"]
    if depth >= MAX_DEPTH or budget.parts >= MAX_PARTS:
        if part.maintype in ("multipart", "message"):
            part.maintype, part.subtype, part.params = "application", "octet-stream", []
        return part
    if part.maintype == "multipart":
        boundary = part.param("boundary")
        ranges = _split_multipart(data, body_start, end, boundary) if boundary else []
        if not ranges:
            part.maintype, part.subtype, part.params = "text", "plain", []
            return part
        child_default = ("message", "rfc822") if part.subtype == "digest" else ("text", "plain")
        for child_start, child_end in ranges:
            if budget.parts >= MAX_PARTS:
                break
            part.children.append(
                _parse(data, child_start, child_end, depth + 1, budget, child_default)
            )
    elif part.maintype == "message" and part.subtype in ("rfc822", "global"):
        part.message = _parse(data, body_start, end, depth + 1, budget, ("text", "plain"))
    return part


def _split_multipart(data: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each body part between the boundary delimiters."""
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    found = _find_delimiter(data, delimiter, start, start, end)
    if found is None:
        return []
    ranges: list[tuple[int, int]] = []
    _, closing, part_start = found
    while not closing and len(ranges) < MAX_PARTS:
        found = _find_delimiter(data, delimiter, part_start, start, end)
        if found is None:
            ranges.append((part_start, end))
            break
        at, closing, after = found
        part_end = at
        if part_end > part_start and data[part_end - 1] == 0x0A:
            part_end -= 1
            if part_end > part_start and data[part_end - 1] == 0x0D:
                part_end -= 1
        ranges.append((part_start, part_end))
        part_start = after
    return ranges


def _find_delimiter(
    data: bytes, delimiter: bytes, pos: int, body_start: int, end: int
) -> tuple[int, bool, int] | None:
    """The next delimiter line: ``(offset, is_closing, offset after its line)``."""
    while True:
        at = data.find(delimiter, pos, end)
        if at < 0:
            return None
        if at == body_start or data[at - 1] == 0x0A:
            after = at + len(delimiter)
            closing = data.startswith(b"--", after, end)
            cursor = after + 2 if closing else after
            while cursor < end and data[cursor] in _WS:
                cursor += 1
            if cursor >= end or data[cursor] in b"\r\n":
                if cursor < end and data[cursor] == 0x0D:
                    cursor += 1
                if cursor < end and data[cursor] == 0x0A:
                    cursor += 1
                return at, closing, cursor
        pos = at + 1


def find_part(root: Part, path: list[int]) -> Part | None:
    """The part a section number path (``[1, 2]`` for ``1.2``) names, or None."""
    node = root
    for depth, number in enumerate(path):
        if depth > 0 and node.message is not None:
            container = node.message
        elif depth > 0 and not node.children:
            return None
        else:
            container = node
        if container.children:
            if not 1 <= number <= len(container.children):
                return None
            node = container.children[number - 1]
        elif number == 1:
            node = container
        else:
            return None
    return node


# ---------------------------------------------------------------------- ENVELOPE
def _text(raw: bytes | None) -> bytes:
    """A header text (subject, display name) on the wire; 8-bit text becomes RFC 2047 words."""
    if raw is None:
        return b"NIL"
    raw = raw.replace(b"\x00", b"")
    if raw.isascii():
        return wire.string(raw)
    return wire.string(encode_words(_decode_8bit(raw)))


def _raw(raw: bytes | None) -> bytes:
    if raw is None:
        return b"NIL"
    return wire.string(raw.replace(b"\x00", b""))


def _decode_8bit(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def encode_words(text: str) -> str:
    """``text`` as RFC 2047 ``=?utf-8?b?...?=`` words of at most 75 characters."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        length = len(ch.encode("utf-8", "replace"))
        if chunk and size + length > 45:
            words.append(_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(ch)
        size += length
    if chunk:
        words.append(_word("".join(chunk)))
    return " ".join(words)


def _word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8", "replace")).decode() + "?="


def _address_list(raw: bytes | None) -> bytes:
    if raw is None:
        return b"NIL"
    items = parse_address_list(raw)
    if not items:
        return b"NIL"
    out: list[bytes] = []
    for item in items:
        if isinstance(item, Group):
            out.append(b"(NIL NIL " + _raw(item.name) + b" NIL)")
            out += [_mailbox(m) for m in item.members]
            out.append(b"(NIL NIL NIL NIL)")
        else:
            out.append(_mailbox(item))
    return b"(" + b"".join(out) + b")"


def _mailbox(item: Mailbox) -> bytes:
    return b"(%s %s %s %s)" % (
        _text(item.name),
        _raw(item.route),
        _raw(item.local or b"MISSING_MAILBOX"),
        _raw(item.domain or b"MISSING_DOMAIN"),
    )


def envelope(part: Part) -> bytes:
    """The ENVELOPE of a message (its top-level part or an encapsulated one)."""
    first: dict[str, bytes] = {}
    for name, raw in part.fields:
        if name not in first:
            first[name] = raw
    value = {name: field_value(raw) for name, raw in first.items()}
    sender = value.get("from")
    from_list = _address_list(sender)
    sender_list = _address_list(value["sender"]) if "sender" in value else from_list
    reply_list = _address_list(value["reply-to"]) if "reply-to" in value else from_list
    if sender_list == b"NIL":
        sender_list = from_list
    if reply_list == b"NIL":
        reply_list = from_list
    return b"(%s)" % b" ".join(
        [
            _raw(value.get("date")),
            _text(value.get("subject")),
            from_list,
            sender_list,
            reply_list,
            _address_list(value.get("to")),
            _address_list(value.get("cc")),
            _address_list(value.get("bcc")),
            _raw(value.get("in-reply-to")),
            _raw(value.get("message-id")),
        ]
    )


# ---------------------------------------------------------------------- BODYSTRUCTURE
def _param_list(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    items = []
    for key, value in params:
        text = value if value.isascii() else encode_words(value)
        items.append(wire.string(key) + b" " + wire.string(text))
    return b"(" + b" ".join(items) + b")"


def _disposition(part: Part) -> bytes:
    raw = part.field("content-disposition")
    if raw is None:
        return b"NIL"
    head, params = _params("content-disposition", raw)
    if not head:
        return b"NIL"
    return b"(" + wire.string(head) + b" " + _param_list(params) + b")"


def _language(part: Part) -> bytes:
    raw = part.field("content-language")
    if raw is None:
        return b"NIL"
    tags = [t.strip() for t in raw.replace(b",", b" ").split() if t.strip()]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return _raw(tags[0])
    return b"(" + b" ".join(_raw(t) for t in tags) + b")"


def body_structure(data: bytes, part: Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of a part (the message itself for the top)."""
    if part.children:
        inner = b"".join(body_structure(data, child, extended) for child in part.children)
        out = inner + b" " + wire.string(part.subtype)
        if extended:
            out += b" " + b" ".join(
                [_param_list(part.params), _disposition(part), _language(part), _location(part)]
            )
        return b"(" + out + b")"
    params = list(part.params)
    if part.maintype == "text" and not any(key == "charset" for key, _ in params):
        params.insert(0, ("charset", "us-ascii"))
    encoding = part.field("content-transfer-encoding")
    items = [
        wire.string(part.maintype),
        wire.string(part.subtype),
        _param_list(params),
        _raw(part.field("content-id")),
        _text(part.field("content-description")),
        _raw(encoding.strip() if encoding else b"7BIT"),
        b"%d" % (part.end - part.body_start),
    ]
    if part.message is not None:
        lines = data.count(b"\n", part.body_start, part.end)
        items += [envelope(part.message), body_structure(data, part.message, extended)]
        items.append(b"%d" % lines)
    elif part.maintype == "text":
        items.append(b"%d" % data.count(b"\n", part.body_start, part.end))
    if extended:
        items += [_raw(part.field("content-md5")), _disposition(part), _language(part)]
        items.append(_location(part))
    return b"(" + b" ".join(items) + b")"


def _location(part: Part) -> bytes:
    return _raw(part.field("content-location"))


# ---------------------------------------------------------------------- text for SEARCH
def decode_header_text(raw: bytes) -> str:
    """A header value as text: unfolded, RFC 2047 words decoded, 8-bit read as UTF-8."""
    text = _decode_8bit(raw)
    if "=?" not in text:
        return text
    try:
        pieces = email.header.decode_header(text)
    except Exception:
        return text
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode_charset(chunk, charset))
    return "".join(out)


def _decode_charset(data: bytes, charset: str | None) -> str:
    name = (charset or "").strip().lower() or "us-ascii"
    try:
        codecs.lookup(name)
    except LookupError:
        return _decode_8bit(data)
    if name in ("us-ascii", "ascii"):
        return _decode_8bit(data)
    return data.decode(name, "replace")


def body_texts(data: bytes, part: Part) -> Iterator[str]:
    """The decoded text of every text part (and of encapsulated messages' headers)."""
    if part.children:
        for child in part.children:
            yield from body_texts(data, child)
        return
    if part.message is not None:
        message = part.message
        yield decode_header_text(data[message.start : message.header_end])
        yield from body_texts(data, message)
        return
    if part.maintype != "text":
        return
    raw = data[part.body_start : part.end]
    encoding = (part.field("content-transfer-encoding") or b"").strip().lower()
    try:
        if encoding == b"base64":
            raw = binascii.a2b_base64(raw, strict_mode=False)
        elif encoding == b"quoted-printable":
            raw = binascii.a2b_qp(raw)
    except (binascii.Error, ValueError):
        pass
    yield _decode_charset(raw, part.param("charset"))
