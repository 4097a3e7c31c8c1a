"""The parts of a message a scanner looks at: its attachments, decoded, however deeply nested.

Parsing and decoding (base64, quoted-printable, RFC 2047 and RFC 2231 file names) is the standard
library's :mod:`email` package. A message is walked down to ``max_depth`` levels of nesting
(multipart containers and attached messages); a part nested deeper is handed over whole, still
encoded, so that nothing goes unscanned: clamd decodes MIME itself, and an external scanner at
least sees the bytes.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Attachment:
    """One leaf part: where it sits (``path``: child indexes from the top), its name and bytes."""

    path: tuple[int, ...]
    filename: str
    content_type: str
    payload: bytes
    #: True when the part was nested deeper than the walk goes: ``payload`` is then the
    #: still-encoded part, headers included.
    whole: bool = False


def parse(message: bytes) -> EmailMessage:
    """The message as an :class:`~email.message.EmailMessage` (never raises on bad MIME)."""
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _is_attachment(part: Message) -> bool:
    if part.get_filename():
        return True
    if part.get_content_disposition() == "attachment":
        return True
    return part.get_content_maintype() not in ("text", "multipart", "message")


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return (
        [child for child in payload if isinstance(child, Message)]
        if isinstance(payload, list)
        else []
    )


def attachments(message: bytes | EmailMessage, max_depth: int) -> list[Attachment]:
    """Every attachment of ``message`` down to ``max_depth`` levels of nesting, decoded."""
    top = parse(message) if isinstance(message, bytes) else message
    found: list[Attachment] = []

    def walk(part: Message, path: tuple[int, ...], depth: int) -> None:
        children = _children(part)
        if children:
            if depth >= max_depth:
                found.append(
                    Attachment(path, "", part.get_content_type(), part.as_bytes(), whole=True)
                )
                return
            for index, child in enumerate(children):
                walk(child, (*path, index), depth + 1)
            return
        if not path or not _is_attachment(part):
            return
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(Attachment(path, part.get_filename() or "", part.get_content_type(), data))

    walk(top, (), 0)
    return found


def safe_file_name(attachment: Attachment, number: int) -> str:
    """A file name for ``attachment`` that cannot leave its folder: ``N-name``."""
    base = attachment.filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._") or "part"
    return f"{number}-{cleaned[:100]}"
