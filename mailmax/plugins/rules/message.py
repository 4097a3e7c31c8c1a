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
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from functools import cached_property

from mailmax.plugins.antivirus.mime import Attachment, attachments, parse

#: How deep attachments are looked for in nested messages and multiparts.
MAX_DEPTH = 10


def _head(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[: end + 2]


class MessageView:
    """The bytes of one message and what conditions read of them (each computed once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        """The message's size in bytes."""
        return len(self.data)

    @cached_property
    def header(self) -> Message:
        """The parsed header fields only (values as they are written)."""
        return BytesHeaderParser(policy=email.policy.compat32).parsebytes(_head(self.data))

    def header_values(self, name: str) -> list[str]:
        """Every value of the header field ``name``, unfolded and decoded."""
        return [_decoded(value) for value in self.header.get_all(name, [])]

    @cached_property
    def header_text(self) -> str:
        """Every header field as ``Name: value`` lines, decoded."""
        return "\n".join(f"{k}: {_decoded(v)}" for k, v in self.header.items())

    @property
    def body_read(self) -> bool:
        """Whether a condition needed the body (its text, the attachments or the whole text)."""
        return "body_text" in self.__dict__ or "attachments" in self.__dict__

    @cached_property
    def parsed(self) -> Message:
        """The whole message, parsed."""
        return BytesParser(policy=email.policy.compat32).parsebytes(self.data)

    def _plain_body(self) -> str | None:
        """The body of a one-part plain text message in 7- or 8-bit (most mail), read without
        parsing the message; None for any other kind (which then is parsed)."""
        header = self.header
        kind = header.get_content_type()
        encoding = str(header.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if kind != "text/plain" or encoding not in ("7bit", "8bit", ""):
            return None
        if header.get_filename() or header.get_content_disposition() == "attachment":
            return None
        start = len(_head(self.data))
        body = self.data[start:].removeprefix(b"\r\n").removeprefix(b"\n")
        charset = header.get_content_charset() or "utf-8"
        try:
            return body.decode(charset, "replace")
        except LookupError:
            return body.decode("utf-8", "replace")

    @cached_property
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

    @cached_property
    def entire_text(self) -> str:
        """The header fields (decoded) and the body text."""
        return f"{self.header_text}\n\n{self.body_text}"

    @cached_property
    def attachments(self) -> list[Attachment]:
        """Every attachment, decoded, with its file name and MIME type."""
        return attachments(parse(self.data), MAX_DEPTH)

    @cached_property
    def lowered(self) -> dict[str, str]:
        """Lower-cased copies of texts, by name, for quick look-ups before a regex."""
        return {}


def _decoded(value: object) -> str:
    text = " ".join(str(value).split())
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return text
