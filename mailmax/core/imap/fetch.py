"""FETCH data items (RFC 3501 6.4.5 and 7.4.2): parsing the request, answering from the file.

Every ``BODY[...]`` answer is cut from the message file exactly as stored (partial fetches
give exactly the requested octets); the whole message is streamed in chunks from the file, so
a big message is never held in memory just to be sent. Only BODYSTRUCTURE, BODY and sections
inside the body need the whole message read and its structure parsed.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from mailmax.core.imap import mime, wire
from mailmax.core.imap.parser import Atom, ParseError, format_internaldate, tokenize
from mailmax.core.store.folder import MessageInfo

#: Bytes read from a file at a time when streaming.
CHUNK = 64 * 1024
#: Most header bytes read while looking for the end of a header.
MAX_HEADER = 1024 * 1024

_SIMPLE = {
    "FLAGS",
    "UID",
    "INTERNALDATE",
    "RFC822.SIZE",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
}
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
#: Item names are case-insensitive (RFC 3501 section 9); clients send ``body.peek[...]``.
_SECTION_ITEM = re.compile(
    r"(BODY(?:\.PEEK)?)\[(.*)\](?:<([0-9]{1,10})\.([0-9]{1,10})>)?$", re.S | re.I
)
_PATH = re.compile(r"([1-9][0-9]{0,5}(?:\.[1-9][0-9]{0,5}){0,30})(?:\.(.*))?$", re.S)


@dataclass(frozen=True, slots=True)
class Section:
    """A ``[section]`` specification."""

    path: tuple[int, ...] = ()
    spec: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: frozenset[str] = frozenset()
    echo: bytes = b""  # the section text as it goes back to the client


@dataclass(frozen=True, slots=True)
class Item:
    """One FETCH data item."""

    name: str  # FLAGS, UID, ... or "BODY[]" for any section fetch
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def sets_seen(self) -> bool:
        """True when fetching this item sets ``\\Seen`` (RFC 3501 6.4.5)."""
        if self.section is not None:
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")


def parse_items(value: Any) -> list[Item]:
    """The items of a FETCH request: a macro, one item, or a parenthesised list."""
    if isinstance(value, Atom) and value.upper() in _MACROS:
        return [Item(name) for name in _MACROS[value.upper()]]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ParseError("Empty FETCH item list")
    return [_item(v) for v in values]


def _item(value: Any) -> Item:
    if not isinstance(value, Atom):
        raise ParseError("Invalid FETCH item")
    upper = value.upper()
    if upper in _SIMPLE:
        return Item(upper)
    match = _SECTION_ITEM.match(str(value))
    if match is None:
        raise ParseError(f"Unknown FETCH item {value[:40]!s}")
    kind, inside, origin, count = match.groups()
    partial = (int(origin), int(count)) if origin is not None else None
    return Item("BODY[]", _section(inside), kind.upper() == "BODY.PEEK", partial)


def _section(text: str) -> Section:
    path: tuple[int, ...] = ()
    rest = text
    match = _PATH.match(text)
    if match is not None:
        path = tuple(int(n) for n in match.group(1).split("."))
        rest = match.group(2) or ""
    head, _, tail = rest.partition(" ")
    spec = head.upper()
    if spec in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        try:
            names = tokenize([tail.encode("utf-8", "surrogateescape")])
        except ParseError:
            raise ParseError("Invalid header field list") from None
        if len(names) != 1 or not isinstance(names[0], list) or not names[0]:
            raise ParseError("Invalid header field list")
        fields: list[str] = []
        for name in names[0]:
            if isinstance(name, list):
                raise ParseError("Invalid header field list")
            fields.append(name.decode("latin-1") if isinstance(name, bytes) else str(name))
        prefix = ".".join(map(str, path)) + "." if path else ""
        echo = f"{prefix}{spec} ({' '.join(fields)})"
        return Section(
            path,
            spec,
            frozenset(f.lower() for f in fields),
            echo.encode("utf-8", "surrogateescape"),
        )
    if tail or spec not in ("", "HEADER", "TEXT", "MIME"):
        raise ParseError("Invalid section")
    if spec == "MIME" and not path:
        raise ParseError("MIME needs a part number")
    if not spec and text and not path:
        raise ParseError("Invalid section")
    prefix = ".".join(map(str, path))
    echo = f"{prefix}.{spec}" if prefix and spec else prefix or spec
    return Section(path, spec, echo=echo.encode("ascii"))


# ---------------------------------------------------------------------- one message's bytes
class Source:
    """Lazy access to one message file: header, whole bytes, parsed structure.

    The file is read with ``pread`` on a descriptor (no file object): ``path`` is tried
    first, ``fallback`` (the store's ``open_file``, which follows renames and raises
    MessageGone) when it is not there.
    """

    def __init__(self, path: str, fallback: Callable[[], BinaryIO]) -> None:
        self._path = path
        self._fallback = fallback
        self._fd = -1
        self._size = 0
        self._head = b""
        self._split: tuple[int, int] | None = None
        self.data: bytes | None = None
        self._tree: mime.Part | None = None
        self._top: mime.Part | None = None

    @classmethod
    def of(cls, folder: Any, info: MessageInfo, folder_dir: str) -> Source:
        """The source of a message of ``folder`` (``folder_dir`` is its directory as text)."""
        path = f"{folder_dir}/{info.filename}" if info.filename else ""
        return cls(path, functools.partial(folder.open_file, info.uid))

    def _open(self) -> int:
        if self._fd < 0:
            try:
                if not self._path:
                    raise FileNotFoundError(self._path)
                fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                handle = self._fallback()
                try:
                    fd = os.dup(handle.fileno())
                finally:
                    handle.close()
            try:
                self._size = os.fstat(fd).st_size
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _read(self, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (blank-padded if the file shrank meanwhile)."""
        fd = self._open()
        data = os.pread(fd, length, start)
        while len(data) < length:
            more = os.pread(fd, length - len(data), start + len(data))
            if not more:
                return data.ljust(length, b" ")
            data += more
        return data

    @property
    def size(self) -> int:
        """The file's size in bytes (opens the file)."""
        self._open()
        return self._size

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def full(self) -> bytes:
        """Every byte of the message."""
        if self.data is None:
            self.data = self._read(0, self.size)
        return self.data

    def split(self) -> tuple[int, int]:
        """``(header_end, body_start)`` offsets."""
        if self._split is None:
            if self.data is not None:
                self._split = mime.split_header(self.data)
            else:
                size, head = self.size, b""
                while True:
                    head += self._read(len(head), min(CHUNK, size - len(head)))
                    header_end, body_start = mime.split_header(head)
                    if len(head) >= size or len(head) >= MAX_HEADER:
                        break
                    if body_start < len(head) or head.endswith((b"\n\n", b"\n\r\n")):
                        break
                self._head = head
                self._split = (header_end, body_start)
        return self._split

    def header(self) -> bytes:
        """The header including the blank line that ends it."""
        _, body_start = self.split()
        if self.data is not None:
            return self.data[:body_start]
        return self._head[:body_start]

    def top(self) -> mime.Part:
        """The top-level part with its header fields (the body is not parsed)."""
        if self._tree is not None:
            return self._tree
        if self._top is None:
            header_end, body_start = self.split()
            head = self.header()
            self._top = mime.Part(
                0, header_end, body_start, self.size, mime.header_fields(head[:header_end])
            )
        return self._top

    def tree(self) -> mime.Part:
        """The whole MIME structure."""
        if self._tree is None:
            self._tree = mime.parse(self.full())
        return self._tree

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``start:end`` in chunks (from memory when read already)."""
        if self.data is not None:
            if end - start <= CHUNK * 4:
                yield self.data[start:end]
                return
            for pos in range(start, end, CHUNK):
                yield self.data[pos : min(end, pos + CHUNK)]
            return
        if end - start <= CHUNK * 4:
            yield self._read(start, end - start)
            return
        for pos in range(start, end, CHUNK):
            yield self._read(pos, min(CHUNK, end - pos))


# ---------------------------------------------------------------------- answering
#: Items answered from the index alone.
META = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE"})


_META_FORMATS = {
    "FLAGS": b"FLAGS %s",
    "UID": b"UID %d",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "INTERNALDATE": b'INTERNALDATE "%s"',
}
_META_VALUES: dict[str, Callable[[MessageInfo, frozenset[str]], object]] = {
    "FLAGS": lambda info, flags: wire.flag_list(flags),
    "UID": lambda info, flags: info.uid,
    "RFC822.SIZE": lambda info, flags: info.size,
    "INTERNALDATE": lambda info, flags: format_internaldate(info.internaldate).encode(),
}

MetaRenderer = Callable[[MessageInfo, int, frozenset[str]], bytes]


def meta_renderer(items: list[Item]) -> MetaRenderer:
    """A function answering ``(info, seq, flags)`` when every item comes from the index.

    FETCH 1:* (FLAGS UID) on a big folder calls it once per message: the response is one
    ``%`` format built once per command.
    """
    names = [item.name for item in items]
    template = b"* %d FETCH (" + b" ".join(_META_FORMATS[name] for name in names) + b")\r\n"
    flag_list = wire.flag_list
    if names == ["FLAGS", "UID"]:
        return lambda info, seq, flags: template % (seq, flag_list(flags), info.uid)
    if names == ["UID", "FLAGS"]:
        return lambda info, seq, flags: template % (seq, info.uid, flag_list(flags))
    values = tuple(_META_VALUES[name] for name in names)

    def render(info: MessageInfo, seq: int, flags: frozenset[str]) -> bytes:
        return template % (seq, *[value(info, flags) for value in values])

    return render


def answer_meta(info: MessageInfo, seq: int, items: list[Item], flags: frozenset[str]) -> bytes:
    """The FETCH response of a message when every item comes from the index."""
    return meta_renderer(items)(info, seq, flags)


def needs_full(items: list[Item]) -> bool:
    """True when answering needs the whole message parsed."""
    for item in items:
        if item.name in ("BODYSTRUCTURE", "BODY"):
            return True
        if item.section is not None and item.section.path:
            return True
    return False


def _span(item: Item, source: Source) -> tuple[int, int] | bytes | None:
    """What a section answers: a byte range of the file, bytes, or None (NIL)."""
    section = item.section
    assert section is not None
    if not section.path:
        if section.spec == "":
            return 0, source.size
        if section.spec == "TEXT":
            return source.split()[1], source.size
        if section.spec == "HEADER":
            return 0, source.split()[1]
        return _fields(source.header(), source.top(), section)
    data = source.full()
    part = mime.find_part(source.tree(), list(section.path))
    if part is None:
        return None
    if section.spec == "":
        return part.body_start, part.end
    if section.spec == "MIME":
        return part.start, part.body_start
    inner = part.message
    if inner is None:
        return None
    if section.spec == "HEADER":
        return inner.start, inner.body_start
    if section.spec == "TEXT":
        return inner.body_start, inner.end
    return _fields(data[inner.start : inner.body_start], inner, section, inner.start)


def _fields(block: bytes, part: mime.Part, section: Section, base: int = 0) -> bytes:
    keep = section.spec == "HEADER.FIELDS"
    chosen = [raw for name, raw in part.fields if (name in section.fields) == keep and name]
    blank = block[part.header_end - base :]
    return b"".join(chosen) + (blank if blank in (b"\r\n", b"\n") else b"\r\n")


def answer(
    info: MessageInfo,
    seq: int,
    items: list[Item],
    flags: frozenset[str] | None,
    source: Source,
) -> Iterator[bytes]:
    """The ``* seq FETCH (...)`` response for one message, in chunks.

    ``flags`` is the message's flags (``\\Recent`` included) when FLAGS goes out.
    """
    out = [b"* %d FETCH (" % seq]
    first = True
    for item in items:
        if not first:
            out.append(b" ")
        first = False
        name = item.name
        if name == "FLAGS":
            out.append(b"FLAGS " + wire.flag_list(flags or frozenset()))
        elif name == "UID":
            out.append(b"UID %d" % info.uid)
        elif name == "INTERNALDATE":
            out.append(b'INTERNALDATE "%s"' % format_internaldate(info.internaldate).encode())
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % info.size)
        elif name == "ENVELOPE":
            out.append(b"ENVELOPE " + mime.envelope(source.top()))
        elif name in ("BODYSTRUCTURE", "BODY"):
            extended = name == "BODYSTRUCTURE"
            out.append(
                name.encode() + b" " + mime.body_structure(source.full(), source.tree(), extended)
            )
        elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            if name == "RFC822":
                start, end = 0, source.size
            elif name == "RFC822.HEADER":
                start, end = 0, source.split()[1]
            else:
                start, end = source.split()[1], source.size
            out.append(name.encode() + b" {%d}\r\n" % (end - start))
            yield b"".join(out)
            out = []
            yield from source.chunks(start, end)
        else:
            assert item.section is not None
            label = b"BODY[" + item.section.echo + b"]"
            span = _span(item, source)
            if item.partial is not None:
                label += b"<%d>" % item.partial[0]
            if span is None:
                out.append(label + b" NIL")
                continue
            if isinstance(span, bytes):
                data = span
                if item.partial is not None:
                    origin, count = item.partial
                    data = data[origin : origin + count]
                out.append(label + b" " + wire.literal(data))
                continue
            start, end = span
            if item.partial is not None:
                origin, count = item.partial
                start = min(end, start + origin)
                end = min(end, start + count)
            out.append(label + b" {%d}\r\n" % (end - start))
            yield b"".join(out)
            out = []
            yield from source.chunks(start, end)
    out.append(b")\r\n")
    yield b"".join(out)
