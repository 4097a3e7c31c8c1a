"""Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3).

Printable US-ASCII (0x20-0x7e) stands for itself, except ``&`` which is written ``&-``; every
other run of characters is UTF-16BE, base64-encoded with ``,`` instead of ``/`` and no
padding, between ``&`` and ``-``. Decoding is strict: a name that a conforming client could not
have produced (a ``&`` run that is not base64, or that encodes printable ASCII, a dangling
bit, a lone surrogate) is refused, so every folder has exactly one name on the wire.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["MUTF7Error", "decode", "encode"]

_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


class MUTF7Error(ValueError):
    """The text is not valid modified UTF-7."""


def encode(name: str) -> str:
    """The modified UTF-7 form of a mailbox name."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            text = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{text}-")
            pending.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(text: str) -> str:
    """The mailbox name a modified UTF-7 string stands for; raises :class:`MUTF7Error`."""
    if any(not " " <= ch <= "~" for ch in text):
        raise MUTF7Error("modified UTF-7 contains only printable US-ASCII")
    out: list[str] = []
    pos = 0
    while True:
        amp = text.find("&", pos)
        if amp < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:amp])
        match = _SHIFTED.match(text, amp)
        if match is None:
            raise MUTF7Error(f"unterminated or invalid '&' sequence at position {amp}")
        payload = match.group(1)
        out.append("&" if not payload else _decode_run(payload))
        pos = match.end()


def _decode_run(payload: str) -> str:
    if len(payload) % 4 == 1:
        raise MUTF7Error("a base64 run of impossible length")
    padded = payload.replace(",", "/") + "=" * (-len(payload) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise MUTF7Error("invalid base64 in a '&' sequence") from None
    if len(raw) % 2:
        raise MUTF7Error("a '&' sequence holds half a UTF-16 unit")
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != payload:
        raise MUTF7Error("a '&' sequence has non-zero padding bits")
    try:
        decoded = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUTF7Error("a '&' sequence holds a lone surrogate") from None
    if any(" " <= ch <= "~" for ch in decoded):
        raise MUTF7Error("printable ASCII must not be base64-encoded")
    return decoded
