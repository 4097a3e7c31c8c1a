"""A message as rules look at it, parsed only as far as the rules that run need.

The header block is parsed on its own; the body is parsed (MIME decoded by the standard
library's :mod:`email` package: base64, quoted-printable, RFC 2047 and RFC 2231 names) only when a
condition asks for the body, the whole text or the attachments. Header fields are read with the
package's fast ``compat32`` parser and decoded (RFC 2047) only when they are encoded.
"""

from __future__ import annotations

import email.errors
import email.header
import email.policy
import re
from collections import OrderedDict
from collections.abc import Callable
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

from mailmax.plugins.antivirus.mime import Attachment, attachments, parse

#: How deep attachments are looked for in nested messages and multiparts.
MAX_DEPTH = 10
#: The header fields that make a message more than plain text (RFC 2045).
_MIME_FIELDS = ("content-type", "content-transfer-encoding", "content-disposition")


_T = TypeVar("_T")


class once(Generic[_T]):
    """A property computed at its first use and then kept in the instance: the standard
    library's ``cached_property`` without the lock it takes at each first use (Python 3.11),
    which cost more than several of the values it guards. Two threads computing the same
    value at once both get an equal one."""

    def __init__(self, function: Callable[[Any], _T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> once[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object, owner: type | None = None) -> once[_T] | _T:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.function(instance)
        return value


def _head(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[: end + 2]


@lru_cache(maxsize=256)
def _field_start(name: str) -> re.Pattern[bytes]:
    """The start of a line (the parser also ends lines at a lone CR) naming the field."""
    field = re.escape(name.encode("ascii"))
    return re.compile(rb"(?:^|\r)" + field + rb"[ \t]*:", re.IGNORECASE | re.MULTILINE)


class MessageView:
    """The bytes of one message and what conditions read of them (each computed once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        #: The message's size in bytes.
        self.size = len(data)
        self._lowered_headers: dict[str, list[str]] = {}
        self._lowered_fields: dict[str, str | None] = {}

    @once
    def head(self) -> bytes:
        """The header block as it is written (up to the empty line), not parsed."""
        return _head(self.data)

    def may_have_field(self, name: str) -> bool:
        """False when no line of the header block starts with the field ``name`` (any case),
        found without parsing; True means "maybe": :attr:`header_names` knows."""
        return _field_start(name).search(self.head) is not None

    @once
    def header(self) -> Message:
        """The parsed header fields only (values as they are written)."""
        return BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.head)

    @once
    def header_names(self) -> frozenset[str]:
        """The names of the header fields, in lower case."""
        return frozenset(name.lower() for name in self.header)

    @once
    def header_fields(self) -> list[tuple[str, str]]:
        """Every header field as (name, value), in order, the value unfolded and decoded."""
        return [(name, _decoded(value)) for name, value in self.header.items()]

    def header_values(self, name: str) -> list[str]:
        """Every value of the header field ``name``, unfolded and decoded."""
        return [_decoded(value) for value in self.header.get_all(name, ())]

    def lowered_header(self, name: str) -> list[str]:
        """:meth:`header_values` in lower case (made once per message and name)."""
        key = name.lower()
        found = self._lowered_headers.get(key)
        if found is None:
            found = self._lowered_headers[key] = [v.lower() for v in self.header_values(key)]
        return found

    def lowered_field(self, name: str) -> str | None:
        """Every value of the header field ``name`` (in lower case) in lower case, one a
        line; None when the message has no such field (made once per message and name)."""
        fields = self._lowered_fields
        if name not in fields:
            values = self.header_values(name)
            fields[name] = "\n".join(values).lower() if values else None
        return fields[name]

    @once
    def header_text(self) -> str:
        """Every header field as ``Name: value`` lines, decoded."""
        return "\n".join(f"{k}: {v}" for k, v in self.header_fields)

    @property
    def body_read(self) -> bool:
        """Whether a condition needed the body (its text, the attachments or the whole text)."""
        return "body_text" in self.__dict__ or "attachments" in self.__dict__

    @once
    def parsed(self) -> Message:
        """The whole message, parsed."""
        return BytesParser(policy=email.policy.compat32).parsebytes(self.data)

    def _plain_body(self) -> str | None:
        """The body of a one-part plain text message in 7- or 8-bit (most mail), read without
        parsing the message; None for any other kind (which then is parsed)."""
        header, charset = self.header, "utf-8"
        if not self.header_names.isdisjoint(_MIME_FIELDS):  # else plain text (RFC 2045)
            kind = header.get_content_type()
            encoding = str(header.get("Content-Transfer-Encoding", "7bit")).strip().lower()
            if kind != "text/plain" or encoding not in ("7bit", "8bit", ""):
                return None
            if header.get_filename() or header.get_content_disposition() == "attachment":
                return None
            charset = header.get_content_charset() or charset
        start = len(self.head)
        body = self.data[start:].removeprefix(b"\r\n").removeprefix(b"\n")
        try:
            return body.decode(charset, "replace")
        except LookupError:
            return body.decode("utf-8", "replace")

    @once
    def body_text(self) -> str:
        """The decoded text of the message's text parts that are not attachments."""
        plain = self._plain_body()
        if plain is not None:
            return plain
        texts = []
        for part in self.parsed.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            if part.get_filename() or part.get_content_disposition() == "attachment":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    texts.append(payload.decode(charset, "replace"))
                except LookupError:
                    texts.append(payload.decode("utf-8", "replace"))
        return "\n".join(texts)

    @once
    def entire_text(self) -> str:
        """The header fields (decoded) and the body text."""
        return f"{self.header_text}\n\n{self.body_text}"

    @once
    def attachments(self) -> list[Attachment]:
        """Every attachment, decoded, with its file name and MIME type."""
        return attachments(parse(self.data), MAX_DEPTH)

    @once
    def lowered_body(self) -> str:
        """:attr:`body_text` in lower case."""
        return self.body_text.lower()

    @once
    def lowered_text(self) -> str:
        """:attr:`entire_text` in lower case."""
        return self.entire_text.lower()


def _decoded(value: object) -> str:
    text = " ".join(str(value).split())
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return text


class RecentMessages:
    """The views of the last few messages, by file: the recipients of one message share one
    view, so it is read and parsed once (files up to ``max_bytes``, at most ``size`` kept)."""

    def __init__(self, size: int = 8, max_bytes: int = 1024 * 1024) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._views: OrderedDict[tuple[str, int, int], MessageView] = OrderedDict()

    def get(self, key: tuple[str, int, int]) -> MessageView | None:
        """The view kept for ``key`` (path, size, modification time in ns), or None."""
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
        return view

    def keep(self, key: tuple[str, int, int], view: MessageView) -> None:
        """Keep ``view`` for ``key`` (a message too large to keep is not)."""
        if key[1] > self.max_bytes:
            return
        self._views[key] = view
        while len(self._views) > self.size:
            self._views.popitem(last=False)
