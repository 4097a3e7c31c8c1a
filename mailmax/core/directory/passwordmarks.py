"""Sessions of administrators whose password is kept in LDAP end when it changes there.

A password changed through MailMax ends the sessions of its account at once; one changed in
LDAP itself is not seen by MailMax. So a session of an LDAP-backed administrator keeps, from
its sign-in, a fingerprint of the account's password-change marker (``pwdChangedTime`` where
the ppolicy overlay keeps it, and the password attribute as the service account reads it):
an HMAC-SHA256 keyed with the session token, which is never stored, so the fingerprint says
nothing about the password without the token. At most every ``[admin]
ldap_password_check_seconds`` a request compares it with a fresh one; a different one ends the
session.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="mailmax.directory")


def current_marker(directory: Any, address: str) -> str | None:
    """The password-change marker of ``address``: None when its password is not in LDAP
    (or the directory has no LDAP sources); raises DirectoryUnavailable when LDAP is away."""
    marker_of = getattr(directory, "password_marker", None)
    return None if marker_of is None else marker_of(address)


def session_mark(directory: Any, address: str, token: str) -> str | None:
    """The fingerprint a new session of ``address`` keeps, None when it needs none. A marker
    the service account cannot read is logged: such sessions cannot see an LDAP change."""
    marker = current_marker(directory, address)
    if marker is None:
        return None
    if not marker:
        log.warn(
            "the LDAP service account can read neither pwdChangedTime nor the password of"
            " {address}: a password changed in LDAP will not end this administrator's"
            " sessions; give the service account read access to one of them",
            address=address,
        )
        return None
    return fingerprint(token, marker)


def fingerprint(token: str, marker: str) -> str:
    """HMAC-SHA256 of ``marker`` keyed with the session ``token`` (hex)."""
    return hmac.new(token.encode(), marker.encode(), hashlib.sha256).hexdigest()


def still_matches(directory: Any, address: str, token: str, mark: str) -> bool:
    """True when the password of ``address`` is the one the session signed in with."""
    marker = current_marker(directory, address)
    return bool(marker) and hmac.compare_digest(fingerprint(token, marker or ""), mark)
