"""Test messages: a clean one, and one whose infected attachment is nested two levels deep."""

from __future__ import annotations

from email.message import EmailMessage

from tests.fixtures.clamd import TEST_VIRUS


def nested_message(payload: bytes = TEST_VIRUS, filename: str = "tëst virus.com") -> bytes:
    """multipart/mixed > multipart/mixed > the attachment (base64, RFC 2231 file name)."""
    inner = EmailMessage()
    inner.set_content("the inner text")
    inner.add_attachment(payload, maintype="application", subtype="octet-stream", filename=filename)
    outer = EmailMessage()
    outer["From"] = "sender@elsewhere.test"
    outer["To"] = "alice@example.test"
    outer["Subject"] = "nested"
    outer.set_content("the outer text")
    outer.add_attachment(b"just a report", maintype="application", subtype="pdf", filename="a.pdf")
    outer.attach(inner)
    return outer.as_bytes()


def clean_message() -> bytes:
    """A plain text message with one harmless attachment."""
    return nested_message(b"nothing to see here", "notes.txt.com")
