"""What the plugin does about a scan: the header, the replacement parts, the notices."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from mailmax.plugins.antivirus.scanning import ScanResult


def header_value(result: ScanResult, hostname: str, action: str = "") -> str:
    """``clean (clamd) on mail.example.com``, ``infected, disinfected: NAME ...``."""
    if result.status == "infected":
        done = {"disinfect": "disinfected", "quarantine": "quarantined"}.get(action, action)
        text = f"infected, {done}: {result.virus}"
    elif result.status == "unscanned":
        text = "not scanned: the scanner failed"
    elif result.status == "oversize":
        text = f"not scanned: {result.detail}"
    else:
        text = "clean"
    return f"{text} ({result.scanner}) on {hostname}"


def removed_part(virus: str) -> bytes:
    """The short text part that takes an infected part's place."""
    return (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + f"An attachment was removed: it contained {virus}.\r\n".encode()
    )


def notice(sender: str, to: str, subject: str, lines: list[str]) -> EmailMessage:
    """A short plain-text notice."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("\n".join(lines) + "\n")
    return message


def describe(envelope: Any, result: ScanResult, action: str) -> list[str]:
    """The lines of a notice about ``envelope``'s message."""
    return [
        f"A message from <{envelope.sender}> to "
        + ", ".join(f"<{r.address}>" for r in envelope.recipients)
        + f" contained a virus: {result.virus}.",
        {
            "refuse": "It was refused.",
            "quarantine": "It was put in quarantine.",
            "disinfect": "The infected parts were removed and the rest delivered.",
        }[action],
    ]
