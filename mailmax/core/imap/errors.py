"""Command failures: a handler raises :class:`No` or :class:`Bad` to end its command."""

from __future__ import annotations


class IMAPError(Exception):
    """A command fails: ``status`` is NO or BAD; ``text`` may start with a response code."""

    status = "NO"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class No(IMAPError):
    """The command failed (tagged NO)."""

    status = "NO"


class Bad(IMAPError):
    """The command was not understood or not allowed now (tagged BAD)."""

    status = "BAD"
