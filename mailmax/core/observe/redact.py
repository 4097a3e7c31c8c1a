"""Protocol secrets kept out of traces and logs: AUTH payloads, passwords.

A command line is shown with everything after the part that names the command and the
mechanism (or the login name) replaced by ``***``; lines that answer an authentication
challenge are replaced whole (:data:`HIDDEN`).
"""

from __future__ import annotations

#: What stands for a secret.
HIDDEN = "***"

# verb -> how many words after it may be shown (the rest is secret)
_SHOWN_AFTER = {
    "AUTH": 1,  # SMTP and POP3: AUTH <mechanism> [initial response]
    "AUTHENTICATE": 1,  # IMAP: tag AUTHENTICATE <mechanism> [initial response]
    "PASS": 0,  # POP3: PASS <password>
    "APOP": 1,  # POP3: APOP <name> <digest>
    "LOGIN": 1,  # IMAP: tag LOGIN <name> <password>
}


def redact_command(line: str, tagged: bool = False) -> str:
    """``line`` (one command; ``tagged``: IMAP, the verb is the second word) without the
    secrets it may carry."""
    words = line.split(" ")
    verb_at = 1 if tagged else 0
    if len(words) <= verb_at:
        return line
    shown = _SHOWN_AFTER.get(words[verb_at].upper())
    if shown is None:
        return line
    keep = verb_at + 1 + shown
    if len(words) <= keep:
        return line
    return " ".join([*words[:keep], HIDDEN])
