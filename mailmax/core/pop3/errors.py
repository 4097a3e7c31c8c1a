"""POP3 command errors."""

from __future__ import annotations


class POP3Error(Exception):
    """A command fails; ``text`` follows ``-ERR`` (with a response code when it has one)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def parse_number(arg: str, what: str = "message number") -> int:
    """A non-negative decimal argument, or :class:`POP3Error` naming what was expected."""
    if not arg.isascii() or not arg.isdigit() or len(arg) > 18:
        raise POP3Error(f"Invalid {what} {arg[:20]!r}")
    return int(arg)
