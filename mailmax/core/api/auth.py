"""Who is calling: bearer tokens (API tokens and session tokens) and the password log-in.

API tokens (``mmx_...``) are stored hashed in the directory (see
:mod:`mailmax.core.directory.admins`). A password log-in (over TLS) gives a session token
(``mms_...``), stored hashed in the directory too, so it outlives a restart and works on every
node of a cluster: it expires ``[admin] session_minutes`` after its last use, at most
``[admin] max_sessions`` are kept (the oldest go first), and signing out or a new password ends
it (a password changed in LDAP too, seen within ``[admin] ldap_password_check_seconds``).
Rights are read from the directory on every request, so a revoke applies at once.

Failed password log-ins are throttled by the server's failed-login limiter, the one mail
log-ins use (delays, then blocks per address and account).

Browsers: tokens travel only in the ``Authorization`` header, never in a cookie, and no
cross-origin (CORS) header is ever sent, so another web site cannot make a browser call the
API with the administrator's rights (no cross-site request forgery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.api.errors import ApiError
from mailmax.core.authlimit import AuthLimiter, LoginBlocked
from mailmax.core.directory.admins import SESSION_PREFIX as SESSION_PREFIX
from mailmax.core.directory.admins import Admin, AdminStore
from mailmax.core.services.actor import Actor

if TYPE_CHECKING:
    from mailmax.core.api.app import AdminApi


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
        self.reconfigure(api.service.settings)

    def reconfigure(self, settings: Any) -> None:
        """Apply new ``[admin]`` session settings (to existing sessions too)."""
        self.session_seconds = settings.admin.session_minutes * 60
        self.max_sessions = settings.admin.max_sessions
        self.ldap_check_seconds = settings.admin.ldap_password_check_seconds

    def _store(self) -> AdminStore:
        return AdminStore(self.api.directory.sync, self.api.reactor.seconds)

    async def end_session(self, token: str) -> bool:
        """End a session token (signing out); False when it was not live."""
        return await self.api.directory.run(self._store().end_session, token)

    async def actor(self, request: Any, *, required: bool = True) -> Actor | None:
        """The administrator calling; ApiError 401 when ``required`` and there is none."""
        token = bearer(request)
        if not token:
            if not required:
                return None
            raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
        admin: Admin | None = None
        if token.startswith(SESSION_PREFIX):
            store = self._store()
            admin = await self.api.directory.run(
                store.session_admin, token, self.session_seconds, self.ldap_check_seconds
            )
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
        store = self._store()
        token, expires = await directory.run(
            store.create_session, admin.address, self.session_seconds, self.max_sessions
        )
        return token, expires, admin
