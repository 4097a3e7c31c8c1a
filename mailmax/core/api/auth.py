"""Who is calling: bearer tokens (API tokens and session tokens) and the password log-in.

API tokens (``mmx_...``) are stored hashed in the directory (see
:mod:`mailmax.core.directory.admins`). A password log-in (over TLS) gives a session token
(``mms_...``) held in this process's memory: it expires ``[admin] session_minutes`` after its
last use, at most ``[admin] max_sessions`` are kept (the oldest go first), and a restart ends
them all. Rights are read from the directory on every request, so a revoke applies at once.

Failed password log-ins are throttled by the server's failed-login limiter, the one mail
log-ins use (delays, then blocks per address and account).

Browsers: tokens travel only in the ``Authorization`` header, never in a cookie, and no
cross-origin (CORS) header is ever sent, so another web site cannot make a browser call the
API with the administrator's rights (no cross-site request forgery).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from mailmax.core.api.errors import ApiError
from mailmax.core.authlimit import AuthLimiter, LoginBlocked
from mailmax.core.directory.admins import Admin, AdminStore
from mailmax.core.services.actor import Actor

if TYPE_CHECKING:
    from mailmax.core.api.app import AdminApi

SESSION_PREFIX = "mms_"


class SessionStore:
    """Session tokens in memory: token hash -> (administrator address, expiry)."""

    def __init__(self, clock: Any, minutes: float, limit: int) -> None:
        self.clock = clock
        self.minutes = minutes
        self.limit = limit
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, address: str) -> tuple[str, float]:
        """A new session token for ``address`` and when it expires (if unused)."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires = self.clock.seconds() + self.minutes * 60
        self._sessions[self._key(token)] = (address, expires)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return token, expires

    def address(self, token: str) -> str | None:
        """The administrator of a live session token (its expiry moves on), or None."""
        key = self._key(token)
        found = self._sessions.get(key)
        now = self.clock.seconds()
        if found is None:
            return None
        if found[1] <= now:
            del self._sessions[key]
            return None
        self._sessions[key] = (found[0], now + self.minutes * 60)
        self._sessions.move_to_end(key)
        return found[0]

    def end(self, token: str) -> bool:
        """Forget a session token; False when it was not live."""
        return self._sessions.pop(self._key(token), None) is not None


def bearer(request: Any) -> str:
    """The bearer token of ``request`` ("" when none was given)."""
    header = (request.getHeader("authorization") or "").strip()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


class Authenticator:
    """Turns a request's token into an :class:`Actor`; runs password log-ins."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api
        admin = api.service.settings.admin
        self.sessions = SessionStore(api.reactor, admin.session_minutes, admin.max_sessions)

    def reconfigure(self, settings: Any) -> None:
        """Apply new ``[admin]`` session settings (to existing sessions too)."""
        self.sessions.minutes = settings.admin.session_minutes
        self.sessions.limit = settings.admin.max_sessions

    def _store(self) -> AdminStore:
        return AdminStore(self.api.directory.sync)

    async def actor(self, request: Any, *, required: bool = True) -> Actor | None:
        """The administrator calling; ApiError 401 when ``required`` and there is none."""
        token = bearer(request)
        if not token:
            if not required:
                return None
            raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
        admin: Admin | None = None
        if token.startswith(SESSION_PREFIX):
            address = self.sessions.address(token)
            if address is not None:
                admin = await self.api.directory.run(self._store().get_admin, address)
        else:
            admin = await self.api.directory.run(self._store().verify_token, token)
        if admin is None or not (admin.system or admin.domains):
            raise ApiError(401, "the token is not valid: unknown, revoked or expired")
        return Actor.from_admin(admin, request.getClientAddress().host)

    async def login(self, ip: str, username: str, password: str) -> tuple[str, float, Admin]:
        """Check an administrator's password: (session token, expiry, administrator), or
        ApiError 401 (wrong, or not an administrator) or 429 (too many failures)."""
        account = AuthLimiter.account_key(username)
        directory = self.api.directory

        async def check() -> Admin | None:
            user = await directory.authenticate(username, password)
            if user is None:
                return None
            admin = await directory.run(self._store().get_admin, user.address)
            return admin if admin is not None and (admin.system or admin.domains) else None

        limiter = self.api.service.authlimit
        try:
            admin = await limiter.attempt(ip, account, check, self.api.reactor)
        except LoginBlocked as exc:
            raise ApiError(429, str(exc)) from None
        if admin is None:
            raise ApiError(401, "wrong user name or password, or not an administrator")
        token, expires = self.sessions.create(admin.address)
        return token, expires, admin
