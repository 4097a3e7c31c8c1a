"""The browser's session: a cookie holding an admin API session token, and CSRF tokens.

The cookie is ``HttpOnly`` (no script reads it), ``Secure`` (sent over HTTPS only) and
``SameSite=Strict`` (another site cannot make the browser send it). Every form also carries a
CSRF token derived from the (secret) session token, so a page keeps working across a restart
and on every node of a cluster; a POST without the right one is refused. The sign-in form,
used before there is a session, carries a random token that must match a short-lived cookie
(double submit).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

#: The cookie holding the session token.
SESSION_COOKIE = b"mailmax_admin"
#: The cookie of the sign-in form's CSRF token.
SIGNIN_COOKIE = b"mailmax_signin"
#: Name of the hidden form field holding the CSRF token.
CSRF_FIELD = "csrf"
#: Where the cookies are sent.
COOKIE_PATH = b"/admin"


class CsrfKeys:
    """Makes and checks CSRF tokens: an HMAC keyed with the session token, which only the
    browser holding the session cookie knows (the page shows the CSRF token, never the
    session token, and the one cannot be worked back from the other)."""

    LABEL = b"MailMax web-admin CSRF"

    def token_for(self, session_token: str) -> str:
        """The CSRF token of a session."""
        return hmac.new(session_token.encode(), self.LABEL, hashlib.sha256).hexdigest()

    def valid(self, session_token: str, given: str) -> bool:
        """True when ``given`` is the session's CSRF token."""
        return hmac.compare_digest(self.token_for(session_token), given)


def read_cookie(request: Any, name: bytes) -> str:
    """The value of cookie ``name`` ("" when absent)."""
    value = request.getCookie(name)
    return value.decode("ascii", "replace") if value else ""


def set_cookie(request: Any, name: bytes, value: str, max_age: int | None = None) -> None:
    """Set a cookie that only this site's pages over HTTPS get, never a script."""
    request.addCookie(
        name,
        value.encode("ascii"),
        path=COOKIE_PATH,
        secure=True,
        httpOnly=True,
        sameSite="strict",
        max_age=str(max_age) if max_age is not None else None,
    )


def clear_cookie(request: Any, name: bytes) -> None:
    """Make the browser forget a cookie."""
    set_cookie(request, name, "", max_age=0)


def same(expected: str, given: str) -> bool:
    """Compare two tokens in constant time (False when either is empty)."""
    return bool(expected and given) and hmac.compare_digest(expected, given)
