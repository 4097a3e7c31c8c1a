"""The raw DATA reader: end detection, unstuffing and content checks in bulk, with bounded memory.

The message arrives in arbitrary chunks. Complete lines are handled a block at a time with
``bytes.find``/``bytes.count``/``bytes.replace`` (no Python loop per line), so a 100 KiB
message costs a handful of C-level scans.

Only ``CRLF . CRLF`` ends the message (RFC 5321 4.1.1.4): a ``.`` between bare LFs or CRs is
content, and content with a bare CR or LF is refused afterwards, so no other server can read
a different message boundary into what this one accepted (SMTP smuggling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailmax.core.smtp.commands import SMTPReplyError

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_END = b"\r\n.\r\n"
_TAIL_KEEP = len(_END) - 1


@dataclass(slots=True)
class DataResult:
    """What the reader made of one message.

    ``chunks`` is the message without dot-stuffing, exactly as sent otherwise; it is empty
    when the message was too big (nothing past the limit is kept). ``size`` counts every
    unstuffed byte, including those past the limit.
    """

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    too_big: bool = False
    bare_eol: bool = False
    nul: bool = False
    long_line: bool = False
    received_headers: int = 0

    @property
    def message(self) -> bytes:
        """The whole message as one bytes object (a copy)."""
        return b"".join(self.chunks)

    def problem(self, max_size: int, max_line: int, max_hops: int) -> SMTPReplyError | None:
        """The reply refusing this message, or ``None`` when its form is acceptable."""
        if self.too_big:
            return SMTPReplyError(552, "5.3.4", f"Message too big: the limit is {max_size} bytes")
        if self.nul:
            return SMTPReplyError(550, "5.6.0", "Message refused: it contains NUL characters")
        if self.bare_eol:
            return SMTPReplyError(
                550, "5.6.0", "Message refused: bare CR or LF found; lines must end with CRLF"
            )
        if self.long_line:
            return SMTPReplyError(
                550, "5.6.0", f"Message refused: a line is longer than {max_line} bytes"
            )
        if self.received_headers > max_hops:
            return SMTPReplyError(
                554,
                "5.4.6",
                f"Too many hops ({self.received_headers} Received headers, limit {max_hops}):"
                " mail loop?",
            )
        return None


def has_long_line(block: bytes, max_line: int) -> bool:
    """True when a line of ``block`` (CRLF-terminated lines) is longer than ``max_line`` bytes.

    A line over the limit is a run of more than ``max_line + 1`` bytes without LF, so it covers
    a whole aligned window of half that size: probe one ``find`` per window, and measure the
    line exactly only where a window has no LF.
    """
    step = max(1, (max_line + 2) // 2)
    size = len(block)
    pos = 0
    while pos < size:
        if block.find(b"\n", pos, pos + step) < 0:
            start = block.rfind(b"\n", 0, pos) + 1
            end = block.find(b"\n", pos)
            end = size if end < 0 else end
            length = end - start - (1 if block[end - 1 : end] == b"\r" else 0)
            if length > max_line:
                return True
            pos = end
        pos += step
    return False


class DataReader:
    """Collects one message after ``354``; call :meth:`feed` until it returns the leftover bytes.

    ``max_size`` bounds what is kept in memory; ``max_line`` bounds one line (without CRLF),
    and also bounds the partial line held between reads.
    """

    def __init__(self, max_size: int, max_line: int) -> None:
        self.max_size = max_size
        self.max_line = max_line
        self.result = DataResult()
        self.done = False
        self._buf = b""
        self._at_line_start = True
        self._in_headers = True
        self._head = bytearray()

    def feed(self, data: bytes) -> bytes | None:
        """Take more bytes; return ``None`` while the message goes on, else what follows its end."""
        if self.done:
            raise RuntimeError("the message has already ended")
        buf = self._buf + data if self._buf else data
        if self._at_line_start and buf[:3] == b".\r\n":
            return self._finish(buf[3:])
        end = buf.find(_END)
        if end >= 0:
            self._lines(buf[: end + 2])
            return self._finish(buf[end + len(_END) :])
        last = buf.rfind(b"\r\n")
        if last >= 0:
            self._lines(buf[: last + 2])
            buf = buf[last + 2 :]
            self._at_line_start = True
        if len(buf) > self.max_line + 1:
            # A line this long is refused anyway: keep only what end detection needs.
            self.result.long_line = True
            self._check(buf[:-_TAIL_KEEP])
            buf = buf[-_TAIL_KEEP:]
            self._at_line_start = False
        self._buf = buf
        return None

    # ------------------------------------------------------------------ internals
    def _finish(self, rest: bytes) -> bytes:
        self.done = True
        self._buf = b""
        self.result.received_headers = len(_RECEIVED.findall(self._head))
        self._head = bytearray()
        return rest

    def _check(self, block: bytes) -> None:
        result = self.result
        if not result.nul and b"\0" in block:
            result.nul = True
        if not result.bare_eol:
            crlf = block.count(b"\r\n")
            if block.count(b"\n") != crlf or block.count(b"\r") != crlf:
                result.bare_eol = True

    def _lines(self, block: bytes) -> None:
        """Handle complete lines (``block`` ends with CRLF and starts where a line starts)."""
        result = self.result
        self._check(block)
        if not result.long_line and len(block) > self.max_line + 2:
            result.long_line = has_long_line(block, self.max_line)
        if self._at_line_start and block[:1] == b".":
            block = block[1:]
        block = block.replace(b"\r\n.", b"\r\n")
        result.size += len(block)
        if result.too_big:
            return
        if result.size > self.max_size:
            result.too_big = True
            result.chunks = []
            self._head = bytearray()
            self._in_headers = False
            return
        result.chunks.append(block)
        if self._in_headers:
            self._scan_headers(block)

    def _scan_headers(self, block: bytes) -> None:
        head = self._head
        start = max(0, len(head) - 3)
        head += block
        if head[:2] == b"\r\n":
            del head[:]
            self._in_headers = False
            return
        blank = head.find(b"\r\n\r\n", start)
        if blank >= 0:
            del head[blank + 2 :]
            self._in_headers = False
