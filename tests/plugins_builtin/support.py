"""What the built-in plugin tests share: SMTP exchanges and a look at the queue."""

from __future__ import annotations

import json
import smtplib
from typing import Any

from mailmax.testing import TestServer


def rcpt(server: TestServer, address: str, sender: str = "someone@sender.test") -> int:
    """The reply code to RCPT TO:<address> in a fresh transaction."""
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail(sender)
        code, _ = client.rcpt(address)
        return code


def send(
    server: TestServer,
    recipients: list[str],
    subject: str = "hi",
    sender: str = "someone@sender.test",
) -> dict[str, Any]:
    """Send one message; the refused recipients (smtplib's dict)."""
    body = f"From: {sender}\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with server.smtp() as client:
        return client.sendmail(sender, recipients, body)


def queued(server: TestServer) -> list[dict[str, Any]]:
    """The envelopes still in the queue."""
    folder = server.data_dir / "queue" / "env"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def refused(server: TestServer, address: str) -> bool:
    """True when RCPT to ``address`` is refused as unknown."""
    return rcpt(server, address) == 550


__all__ = ["queued", "rcpt", "refused", "send", "smtplib"]
