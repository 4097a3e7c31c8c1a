"""The ``Received`` trace header prepended to every message (RFC 5321 4.4, RFC 5322 3.6.7)."""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import re
import time

_UNSAFE = re.compile(r"[^\x21-\x7e]|[()\\;]")


def protocol_name(esmtp: bool, tls: bool, authenticated: bool) -> str:
    """The ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848)."""
    if not esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


@functools.lru_cache(maxsize=256)
def address_literal(ip: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` for a client IP."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return f"[{_clean(ip)}]"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return f"[{parsed.ipv4_mapped}]"
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipients: list[str],
    reverse_name: str | None = None,
    when: float | None = None,
) -> bytes:
    """The header as bytes, folded, ending with CRLF.

    ``from`` names what the client said in HELO/EHLO and, in the comment, its reverse DNS name
    when known and its IP; ``for`` names the recipient only when there is exactly one, so a
    message to several people does not tell each of them who else got it.
    """
    helo_text = _clean(helo) or "unknown"
    client = address_literal(client_ip)
    comment = f"{_clean(reverse_name)} {client}" if reverse_name else client
    lines = [
        f"Received: from {helo_text} ({comment})",
        f"\tby {_clean(hostname)} (MailMax) with {protocol} id {_clean(queue_id)}",
    ]
    date = _date(int(when if when is not None else time.time()))
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}>;")
    else:
        lines[-1] += ";"
    lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """The RFC 5322 date of a second (a message per millisecond would format it 1000 times)."""
    return email.utils.formatdate(second, localtime=True)


def _clean(text: str | None) -> str:
    """Printable ASCII only, without characters that would break the comment structure."""
    if not text:
        return ""
    return _UNSAFE.sub("?", text)[:255]
