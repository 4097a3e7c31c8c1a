"""The Sender Rewriting Scheme (SRS0) for forwarded mail.

Mail forwarded to another server leaves with ``SRS0=HHHH=TT=domain=local@ourdomain`` as its
envelope sender, so the receiving server checks SPF against our domain; a bounce to that
address comes back to us and :func:`reverse` gives the original sender again. ``HHHH`` is an
HMAC of the rest (so nobody can use us as a bounce relay), ``TT`` the day it was made (so old
addresses expire).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAYS = 1024
PREFIX = "SRS0"


def _today(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 86400) % _DAYS


def _stamp(day: int) -> str:
    return _BASE32[day // 32] + _BASE32[day % 32]


def _hash(secret: bytes, *parts: str) -> str:
    digest = hmac.new(secret, "".join(parts).lower().encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()[:4]


def forward(sender: str, srs_domain: str, secret: bytes, now: float | None = None) -> str:
    """The SRS0 address standing for ``sender`` (the null sender stays null)."""
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        return sender
    stamp = _stamp(_today(now))
    return f"{PREFIX}={_hash(secret, stamp, domain, local)}={stamp}={domain}={local}@{srs_domain}"


def is_srs(address: str) -> bool:
    """True when ``address`` looks like an SRS0 address (not checked)."""
    return address.upper().startswith(PREFIX + "=")


def reverse(address: str, secret: bytes, max_age_days: int, now: float | None = None) -> str | None:
    """The original sender of a valid, unexpired SRS0 ``address``; None otherwise."""
    local = address.rpartition("@")[0]
    parts = local.split("=", 4)
    if len(parts) != 5 or parts[0].upper() != PREFIX:
        return None
    _, given, stamp, domain, original = parts
    if len(stamp) != 2 or not domain or not original:
        return None
    try:
        day = _BASE32.index(stamp[0].upper()) * 32 + _BASE32.index(stamp[1].upper())
    except ValueError:
        return None
    if not hmac.compare_digest(given.lower(), _hash(secret, stamp, domain, original).lower()):
        return None
    if (_today(now) - day) % _DAYS > max_age_days:
        return None
    return f"{original}@{domain}"
