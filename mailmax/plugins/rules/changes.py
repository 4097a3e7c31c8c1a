"""Copies of a message that rules make: without attachments, and the note to self.

Both are built with the standard library's :mod:`email` package. A note carries an
``X-MailMax-Rule-Note`` header, a keyed hash of its ``Message-ID``: the rules never run on such
a note again (a note about a note would loop), and nobody outside can forge one.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import hmac
import re
from email.message import EmailMessage, Message

from mailmax.plugins.antivirus.mime import parse

NOTE_HEADER = "X-MailMax-Rule-Note"
_TRACE = re.compile(rb"^(Return-Path|Delivered-To):[^\r\n]*\r?\n", re.IGNORECASE)


def without_trace(data: bytes) -> bytes:
    """``data`` without the ``Return-Path`` and ``Delivered-To`` lines this delivery put on
    top of a queued copy (MailMax writes them again when it stores a changed copy)."""
    for _ in range(2):
        match = _TRACE.match(data)
        if match is None:
            break
        data = data[match.end() :]
    return data


def _is_attachment(part: Message) -> bool:
    if part.get_filename() or part.get_content_disposition() == "attachment":
        return True
    return part.get_content_maintype() not in ("text", "multipart", "message")


def strip_attachments(data: bytes) -> tuple[bytes, int]:
    """The message with each attachment replaced by a short text part; (bytes, how many)."""
    message = parse(data)
    removed = 0
    for part in list(message.walk()):
        if part.is_multipart() or not _is_attachment(part):
            continue
        name = part.get_filename() or "(no name)"
        kind = part.get_content_type()
        assert isinstance(part, EmailMessage)
        part.clear_content()
        part.set_content(f"An attachment was removed by a mail rule: {name} ({kind}).\n")
        removed += 1
    if not removed:
        return data, 0
    return message.as_bytes(policy=email.policy.SMTP), removed


def note_token(secret: bytes, message_id: str) -> str:
    """The keyed hash that marks a note with ``message_id`` as ours."""
    return hmac.new(secret, message_id.strip().encode(), hashlib.sha256).hexdigest()[:32]


def is_our_note(header: Message, secret: bytes) -> bool:
    """Whether a message with this header block is a note the rules sent."""
    token = header.get(NOTE_HEADER)
    message_id = header.get("Message-ID")
    if not token or not message_id:
        return False
    return hmac.compare_digest(str(token).strip(), note_token(secret, str(message_id)))


def _line(value: object, limit: int = 200) -> str:
    return " ".join(str(value or "").split())[:limit]


def note(
    mailbox: str,
    hostname: str,
    secret: bytes,
    original: Message,
    notes: list[tuple[str, str]],
    outcome: str,
) -> EmailMessage:
    """The note to ``mailbox`` about ``original`` (its header): what its rules noted and did."""
    message = EmailMessage()
    domain = mailbox.rpartition("@")[2]
    message["From"] = f"Mail rules <postmaster@{domain}>"
    message["To"] = mailbox
    message["Subject"] = f"Rule note: {_line(original.get('Subject'), 150) or '(no subject)'}"
    message["Auto-Submitted"] = "auto-generated"
    message["Message-ID"] = email.utils.make_msgid(domain=hostname)
    message[NOTE_HEADER] = note_token(secret, str(message["Message-ID"]))
    lines = [f"{rule}: {text}" for rule, text in notes]
    lines += [
        "",
        "About the message:",
        f"  From: {_line(original.get('From'))}",
        f"  Subject: {_line(original.get('Subject'))}",
        f"  Date: {_line(original.get('Date'))}",
        f"What became of it: {outcome}",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message
