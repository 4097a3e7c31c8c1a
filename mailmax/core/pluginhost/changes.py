"""Changes a ``mailmax_data`` plugin asks for: headers added or removed, a MIME part or the
whole message replaced.

A plugin records what it wants on the :class:`MessageChanges` it gets as ``changes``; MailMax
applies everything recorded for a group of recipients once, after the last plugin ran and
before the message is spooled, then checks the result against the size and hop limits like
any received message. Changes recorded by a plugin whose verdict refuses the message are moot.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII except ':'
_SECTION = re.compile(r"^[1-9][0-9]*(\.[1-9][0-9]*)*$")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)


class ChangeError(ValueError):
    """A change that cannot be made (a bad header name, a MIME part that does not exist)."""


def crlf(data: bytes) -> bytes:
    """``data`` with every bare LF turned into CRLF (the line ends SMTP carries)."""
    return _BARE_LF.sub(b"\r\n", data)


def split_head(message: bytes) -> tuple[bytes, bytes]:
    """The header block (with its final CRLF) and the rest (the blank line and the body)."""
    if message.startswith(b"\r\n"):
        return b"", message
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return message, b""
    return message[: end + 2], message[end + 2 :]


def received_count(message: bytes) -> int:
    """How many ``Received`` header fields the header block of ``message`` has."""
    return len(_RECEIVED.findall(split_head(message)[0]))


def _fields(head: bytes) -> list[bytes]:
    """The header block as whole fields (a field with its folded continuation lines)."""
    out: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


@dataclass
class MessageChanges:
    """What one chain of ``mailmax_data`` plugins wants changed in the message.

    Every method checks its arguments at once (:class:`ChangeError`) and records the change;
    nothing is applied before the chain has finished. ``plugins`` names who asked for changes.
    """

    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    parts: list[tuple[str, bytes]] = field(default_factory=list)
    replacement: bytes | None = None
    plugins: list[str] = field(default_factory=list)
    _current: str = field(default="", repr=False)

    def begin(self, plugin: str) -> None:
        """The plugin ``plugin`` runs next (so :attr:`plugins` can name who asked)."""
        self._current = plugin

    def add_header(self, name: str, value: str) -> None:
        """Add the header field ``name: value`` at the top of the message's header."""
        if not _NAME.match(name):
            raise ChangeError(f"{name!r} is not a header field name")
        if "\r" in value or "\n" in value:
            raise ChangeError(f"the value of {name} must be one line (it is folded as needed)")
        self.added.append((name, value))
        self._note()

    def remove_header(self, name: str) -> None:
        """Remove every ``name`` header field (of the top-level header; case-insensitive)."""
        if not _NAME.match(name):
            raise ChangeError(f"{name!r} is not a header field name")
        if name.lower() == "received":
            raise ChangeError("Received header fields cannot be removed (they count the hops)")
        self.removed.append(name.lower())
        self._note()

    def replace_part(self, section: str, entity: bytes) -> None:
        """Replace the MIME part numbered ``section`` (IMAP numbering: ``"1"``, ``"2.1"``) by
        ``entity``: a complete MIME entity, its header fields, a blank line and its body."""
        if not _SECTION.match(section):
            raise ChangeError(f"{section!r} is not a MIME part number such as '1' or '2.1'")
        self.parts.append((section, crlf(bytes(entity))))
        self._note()

    def replace_message(self, message: bytes) -> None:
        """Replace the whole message (header and body) by ``message``.

        Header and part changes recorded before this one are dropped; later ones apply to the
        new message.
        """
        self.replacement = crlf(bytes(message))
        self.added, self.removed, self.parts = [], [], []
        self._note()

    @property
    def empty(self) -> bool:
        """True when nothing was asked for."""
        return not (self.added or self.removed or self.parts) and self.replacement is None

    def _note(self) -> None:
        if self._current and self._current not in self.plugins:
            self.plugins.append(self._current)

    def key(self) -> tuple:
        """What makes two sets of changes give the same message (for sharing spooled copies)."""
        return (tuple(self.added), tuple(self.removed), tuple(self.parts), self.replacement)

    # ------------------------------------------------------------------ applying
    def apply(self, message: bytes) -> bytes:
        """The message with every recorded change made (``message`` itself when none)."""
        if self.empty:
            return message
        result = self.replacement if self.replacement is not None else message
        for section, entity in self.parts:
            result = _replace_part(result, section, entity)
        if self.added or self.removed:
            head, rest = split_head(result)
            kept = [f for f in _fields(head) if _field_name(f) not in self.removed]
            new = [f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in self.added]
            result = b"".join(new + kept) + rest
        return result


def _field_name(field_bytes: bytes) -> str:
    return field_bytes.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def _replace_part(message: bytes, section: str, entity: bytes) -> bytes:
    """``message`` with the part numbered ``section`` replaced by ``entity``."""
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    new_part = email.message_from_bytes(entity, policy=email.policy.compat32)
    parent, index = None, 0
    current = parsed
    for number in (int(n) for n in section.split(".")):
        if not current.is_multipart():
            if number == 1 and parent is None and current is parsed:
                continue  # part 1 of a single-part message is its body
            raise ChangeError(f"the message has no MIME part {section}")
        children = current.get_payload()
        if number > len(children):
            raise ChangeError(f"the message has no MIME part {section}")
        parent, index, current = current, number - 1, children[number - 1]
    if parent is None:  # a single-part message: its body is the part
        for name in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition"):
            del parsed[name]
            if new_part[name] is not None:
                parsed[name] = new_part[name]
        parsed.set_payload(new_part.get_payload())
    else:
        parent.get_payload()[index] = new_part
    return crlf(parsed.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n")))
