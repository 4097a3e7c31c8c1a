"""The verdict vocabulary of policy hooks: what a plugin may answer to an SMTP phase.

A hook returns ``None`` (no opinion) or a :class:`Verdict`. ``CONTINUE`` is an explicit "no
opinion"; every other action is decisive and stops the chain.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    """What the server does with a verdict."""

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCONNECT = "disconnect"


_DEFAULTS = {
    Action.CONTINUE: (250, "2.0.0", "OK"),
    Action.ACCEPT: (250, "2.0.0", "OK"),
    Action.REJECT: (550, "5.7.1", "Rejected by policy"),
    Action.TEMPFAIL: (451, "4.3.0", "Temporary failure, try again later"),
    Action.DISCONNECT: (421, "4.7.0", "Closing connection"),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A policy decision with the SMTP reply that carries it.

    ``code`` is the basic reply code (e.g. 550), ``status`` the enhanced status code (RFC 3463,
    e.g. ``"5.7.1"``) and ``text`` the human-readable part. ``plugin`` names who decided.
    """

    action: Action
    code: int
    status: str
    text: str
    plugin: str = ""

    @property
    def decisive(self) -> bool:
        """True for every action but CONTINUE."""
        return self.action is not Action.CONTINUE

    def reply(self) -> bytes:
        """The reply line(s) as sent to an SMTP client, without the final CRLF."""
        lines = self.text.splitlines() or [""]
        out = []
        for index, line in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            out.append(f"{self.code}{sep}{self.status} {line}".rstrip())
        return "\r\n".join(out).encode("utf-8", "replace")

    def with_plugin(self, name: str) -> Verdict:
        """A copy naming the plugin that decided."""
        return Verdict(self.action, self.code, self.status, self.text, name)


def _make(action: Action, text: str | None, code: int | None, status: str | None) -> Verdict:
    d_code, d_status, d_text = _DEFAULTS[action]
    return Verdict(action, code or d_code, status or d_status, text if text is not None else d_text)


def cont() -> Verdict:
    """No opinion: let the next plugin decide."""
    return _make(Action.CONTINUE, None, None, None)


def accept(text: str | None = None, code: int | None = None, status: str | None = None) -> Verdict:
    """Accept now, skipping the remaining plugins of this hook."""
    return _make(Action.ACCEPT, text, code, status)


def reject(text: str | None = None, code: int | None = None, status: str | None = None) -> Verdict:
    """Refuse permanently (5xx)."""
    verdict = _make(Action.REJECT, text, code, status)
    if not 500 <= verdict.code <= 599 or not verdict.status.startswith("5."):
        raise ValueError(
            f"reject needs a 5xx code and a 5.x.x status, got {verdict.code} {verdict.status}"
        )
    return verdict


def tempfail(
    text: str | None = None, code: int | None = None, status: str | None = None
) -> Verdict:
    """Refuse for now (4xx): the client should try again later."""
    verdict = _make(Action.TEMPFAIL, text, code, status)
    if not 400 <= verdict.code <= 499 or not verdict.status.startswith("4."):
        raise ValueError(
            f"tempfail needs a 4xx code and a 4.x.x status, got {verdict.code} {verdict.status}"
        )
    return verdict


def disconnect(
    text: str | None = None, code: int | None = None, status: str | None = None
) -> Verdict:
    """Reply (421 by default) and close the connection."""
    return _make(Action.DISCONNECT, text, code, status)
