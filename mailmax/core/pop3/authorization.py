"""POP3 AUTHORIZATION state: CAPA, STLS, USER/PASS, APOP and SASL PLAIN.

Every login goes through the failed-login limits (:mod:`mailmax.core.authlimit`): an unknown
user, a wrong password and a disabled account get the same reply after the same delay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.authlimit import AuthLimiter, LoginBlocked
from mailmax.core.cluster import proxy
from mailmax.core.credentials import hashed_login, password_login
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.directory.mixed import ClearPasswordNotKept
from mailmax.core.pop3.errors import POP3Error
from mailmax.core.pop3.maildrop import Maildrop
from mailmax.core.store.lock import MailboxInUse
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.directory.api import User
    from mailmax.core.model import Session

log = Logger(namespace="mailmax.pop3")

MAX_LOGIN = 320
MAX_PASSWORD = 1024


class AuthorizationMixin:
    """The commands of the AUTHORIZATION state, mixed into the POP3 protocol."""

    factory: Any
    transport: Any
    reactor: Any
    directory: Any
    listener: Any
    session: Session | None
    state: str
    timestamp: str
    user: User | None
    maildrop: Maildrop | None
    _user_name: str | None
    _sasl_pending: bool
    _closing: bool
    _send: Callable[[str], None]
    _sid: Callable[[], str]

    @property
    def tls(self) -> bool:
        """True on an implicit-TLS port or after STLS."""
        return bool(self.session and self.session.tls)

    @property
    def plaintext_allowed(self) -> bool:
        """USER/PASS and AUTH PLAIN are offered on TLS connections, or when configured."""
        return self.tls or self.factory.allow_plaintext_auth

    def pop_CAPA(self, arg: str) -> None:
        """CAPA (RFC 2449): what this server offers in the current state."""
        lines = ["+OK Capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"]
        lines.append("PIPELINING")
        if self.state == "authorization":
            if self.plaintext_allowed:
                lines += ["USER", "SASL PLAIN"]
            if self.factory.tls_options is not None and not self.tls:
                lines.append("STLS")
        lines += ["IMPLEMENTATION MailMax", "."]
        self.transport.write("\r\n".join(lines).encode() + b"\r\n")

    def pop_STLS(self, arg: str) -> None:
        """STLS (RFC 2595): start TLS; anything pipelined behind the command is discarded."""
        if arg:
            raise POP3Error("Syntax: STLS")
        if self.tls:
            raise POP3Error("Command not permitted when TLS active")
        if self.factory.tls_options is None:
            raise POP3Error("STLS not available on this port")
        self._send("+OK Begin TLS negotiation")
        self.start_tls()
        self._user_name = None

    def _require_plaintext(self) -> None:
        if not self.plaintext_allowed:
            raise POP3Error(
                "[AUTH] Plain-text login is not allowed on an unencrypted connection; "
                "use STLS first"
            )

    def pop_USER(self, arg: str) -> None:
        """USER name: remember the name for PASS."""
        self._require_plaintext()
        if not arg or len(arg) > MAX_LOGIN or " " in arg:
            raise POP3Error("Syntax: USER name")
        self._user_name = arg
        self._send("+OK Send PASS")

    def pop_PASS(self, arg: str) -> defer.Deferred[None]:
        """PASS password (the rest of the line, spaces included)."""
        self._require_plaintext()
        login, self._user_name = self._user_name, None
        if login is None:
            raise POP3Error("Send USER first")
        if len(arg) > MAX_PASSWORD:
            raise POP3Error("Password too long")

        def check() -> defer.Deferred[User | None]:
            return password_login(self.factory.portal, login, arg, self.listener.default_domain)

        return defer.ensureDeferred(self._login(login, check, "USER/PASS", password=arg))

    def pop_APOP(self, arg: str) -> defer.Deferred[None]:
        """APOP name digest: MD5 of the greeting's timestamp and the clear-text password."""
        words = arg.split()
        if len(words) != 2 or len(words[0]) > MAX_LOGIN:
            raise POP3Error("Syntax: APOP name digest")
        login, digest = words[0], words[1].lower()
        if len(digest) != 32 or any(ch not in "0123456789abcdef" for ch in digest):
            raise POP3Error("Syntax: APOP name digest (32 hexadecimal digits)")
        self._user_name = None

        def verify(clear: str) -> bool:
            secret = (self.timestamp + clear).encode("utf-8")
            expected = hashlib.md5(secret, usedforsecurity=False).hexdigest()
            return hmac.compare_digest(expected, digest)

        def check() -> defer.Deferred[User | None]:
            return hashed_login(self.factory.portal, login, verify, self.listener.default_domain)

        failure = (
            "[AUTH] APOP failed: wrong name or digest, or no clear-text password is kept for "
            "APOP on this account (use USER/PASS)"
        )
        return defer.ensureDeferred(self._login(login, check, "APOP", failure))

    def pop_AUTH(self, arg: str) -> defer.Deferred[None] | None:
        """AUTH [PLAIN [initial-response]] (RFC 5034)."""
        words = arg.split()
        if not words:
            lines = ["+OK Mechanisms follow", *(["PLAIN"] if self.plaintext_allowed else []), "."]
            self.transport.write("\r\n".join(lines).encode() + b"\r\n")
            return None
        if words[0].upper() != "PLAIN" or len(words) > 2:
            raise POP3Error("Unrecognized authentication mechanism")
        self._require_plaintext()
        if len(words) == 2:
            return self._sasl_response(words[1])
        self._sasl_pending = True
        self._send("+ ")
        return None

    def _sasl_response(self, text: str) -> defer.Deferred[None] | None:
        text = text.strip()
        if text == "*":
            raise POP3Error("Authentication cancelled")
        try:
            decoded = base64.b64decode(text if text != "=" else "", validate=True)
            parts = decoded.decode("utf-8").split("\0")
        except (binascii.Error, ValueError):
            raise POP3Error("Malformed authentication response") from None
        if len(parts) != 3 or not parts[1] or parts[0] not in ("", parts[1]):
            raise POP3Error("Malformed authentication response")
        _, login, password = parts
        if len(login) > MAX_LOGIN or len(password) > MAX_PASSWORD:
            raise POP3Error("Malformed authentication response")

        def check() -> defer.Deferred[User | None]:
            return password_login(
                self.factory.portal, login, password, self.listener.default_domain
            )

        return defer.ensureDeferred(self._login(login, check, "SASL PLAIN", password=password))

    async def _login(
        self,
        login: str,
        check: Callable[[], Awaitable[User | None]],
        method: str,
        failure: str = "[AUTH] Authentication failed",
        password: str | None = None,
    ) -> None:
        assert self.session is not None
        ip = self.session.peer_ip
        account = AuthLimiter.account_key(login, self.listener.default_domain)
        try:
            user = await self.factory.authlimit.attempt(ip, account, check, self.reactor)
        except LoginBlocked as exc:
            self._log_login(login, method, "blocked")
            raise POP3Error(f"[SYS/TEMP] {exc}") from None
        except DirectoryUnavailable as exc:
            self._log_login(login, method, f"directory unavailable ({exc})")
            raise POP3Error(
                "[SYS/TEMP] The user directory is not answering; try again later"
            ) from None
        except ClearPasswordNotKept as exc:
            self._log_login(login, method, "refused: no clear password")
            raise POP3Error(f"[AUTH] {method} is not available: {exc}") from None
        if user is None:
            self._log_login(login, method, "failed")
            raise POP3Error(failure)
        verdict = await self.factory.policy("mailmax_auth", self.session, user.address)
        if verdict.decisive and verdict.action is not Action.ACCEPT:
            self._log_login(user.address, method, f"refused by {verdict.plugin or 'policy'}")
            raise POP3Error(f"[AUTH] {verdict.text}")
        if await self._proxied(user, method, password):
            return
        try:
            root = await self.directory.user_maildir(user)
            drop = await self.factory.blocking(Maildrop.open, root, fsync=self.factory.fsync)
        except MailboxInUse as exc:
            self._log_login(user.address, method, f"in use ({exc})")
            raise POP3Error(
                "[IN-USE] Your mailbox is in use by another POP3 session; try again later"
            ) from None
        except Exception:
            log.failure("cannot open the mailbox of {user}", user=user.address)
            raise POP3Error("[SYS/TEMP] Cannot open your mailbox now; try again later") from None
        if self._closing:
            await self.factory.blocking(drop.close)
            return
        self.user, self.maildrop, self.state = user, drop, "transaction"
        self._log_login(user.address, method, "ok")
        self.factory.logins.note(ip, user.address)
        recorded = self.directory.record_login(user.address, "pop3", ip)
        if isinstance(recorded, defer.Deferred):
            recorded.addErrback(lambda f: log.failure("cannot record login", f))
        count, octets = drop.stat()
        self._send(f"+OK {user.address} has {count} message(s) ({octets} octets)")

    async def _proxied(self, user: User, method: str, password: str | None) -> bool:
        """Clustered domains: relay the session to the user's home node when that is not this
        one (True); False when the mailbox is here."""
        cluster = getattr(self.factory, "cluster", None)
        try:
            home = await proxy.home_elsewhere(cluster, self.directory, user)
            if not home:
                return False
            if password is None:
                raise proxy.ProxyError(
                    f"APOP cannot be passed on to server {home}, which holds your mailbox; "
                    "log in with USER/PASS (over TLS)",
                    temporary=False,
                )
            upstream = await proxy.open_home(
                cluster, home, "pop3", user.address, password, self.reactor
            )
        except proxy.ProxyError as exc:
            self._log_login(user.address, method, f"not proxied ({exc.text})")
            code = "[SYS/TEMP]" if exc.temporary else "[SYS/PERM]"
            raise POP3Error(f"{code} {exc.text}") from None
        if self._closing:
            upstream.transport.loseConnection()
            return True
        self.user, self.state = user, "proxied"
        self._log_login(user.address, method, f"ok, proxied to node {home}")
        self.factory.logins.note(self.session.peer_ip, user.address)
        self._send(f"+OK {user.address} logged in (mailbox on server {home})")
        upstream.join(self)
        return True

    def _log_login(self, login: str, method: str, outcome: str) -> None:
        self.note_login(login, outcome)
        log.info(
            "login {login} {method} {outcome} from {peer} session {session_id}",
            login=login,
            method=method,
            outcome=outcome,
            peer=self.session.peer_ip if self.session else "",
            session_id=self._sid(),
        )
