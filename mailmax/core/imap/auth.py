"""Log-in: STARTTLS, LOGIN, AUTHENTICATE PLAIN (with SASL-IR), and the session limits.

Credentials are refused on unencrypted connections (LOGINDISABLED is advertised) unless
plaintext log-in is allowed. Every attempt goes through the shared failed-login throttle
(:mod:`mailmax.core.authlimit`); a successful one runs the ``mailmax_auth`` policy, checks the
per-user session limit, opens the user's Maildir (creating the special-use folders at the first
log-in) and records the log-in with the directory.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.authlimit import LoginBlocked
from mailmax.core.cluster import proxy
from mailmax.core.credentials import password_login
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.imap import parser
from mailmax.core.imap.base import SessionBase
from mailmax.core.imap.errors import Bad, No
from mailmax.core.logfile import mail_logger
from mailmax.core.store.durable import store_sync_mode
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.openfolders import OpenFolders
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.config import Settings

log = Logger(namespace="mailmax.imap")
mail_log = mail_logger("mailmax.imap")

#: Failed log-ins on one connection before the server says BYE.
MAX_AUTH_FAILURES = 5
#: Seconds from a log-in to its record in the directory (see ``record_login``).
RECORD_LOGIN_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class IMAPLimits:
    """Session limits; read from an ``[imap]`` settings section when there is one."""

    login_timeout: float = 60.0
    idle_timeout: float = 1800.0
    max_sessions_per_user: int = 20
    idle_poll_seconds: float = 1.0
    allow_plaintext_auth: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> IMAPLimits:
        """The limits of the ``[imap]`` settings."""
        imap = settings.imap
        return cls(
            login_timeout=imap.login_timeout,
            idle_timeout=imap.idle_timeout,
            max_sessions_per_user=imap.max_sessions_per_user,
            idle_poll_seconds=imap.idle_poll_seconds,
            allow_plaintext_auth=imap.allow_plaintext_auth,
        )


def one_line(text: str) -> str:
    """The first line of a (plugin's) text, safe inside one response line."""
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


class AuthCommands(SessionBase):
    """Mixin of :class:`~mailmax.core.imap.server.IMAPServer` for the not-authenticated state."""

    _auth_failures: int
    _sasl_tag: str | None
    _counted: bool
    #: A log-in not written to the directory yet: (address, the delayed call that writes it).
    _login_record: tuple[str, Any] | None = None

    # ------------------------------------------------------------------ not authenticated
    @property
    def login_allowed(self) -> bool:
        """LOGIN and AUTHENTICATE need TLS unless plaintext log-in is allowed."""
        return self.tls or self.limits.allow_plaintext_auth

    def cmd_STARTTLS(self, tag: str, args: list) -> None:
        """STARTTLS: reply, drop anything pipelined behind it, then negotiate TLS."""
        if args:
            raise Bad("STARTTLS takes no arguments")
        if self.tls:
            raise Bad("TLS is already active")
        if self.factory.tls_options is None:
            raise No("STARTTLS is not available here")
        self.tagged(tag, "OK", "Begin TLS negotiation now")
        self.start_tls()
        self._sasl_tag = None

    async def cmd_LOGIN(self, tag: str, args: list) -> str:
        """LOGIN user password."""
        if len(args) != 2:
            raise Bad("Syntax: LOGIN user password")
        if not self.login_allowed:
            raise No("[PRIVACYREQUIRED] Log-in is disabled until STARTTLS")
        login = parser.astring(args[0], "user name").decode("utf-8", "replace")
        password = parser.astring(args[1], "password").decode("utf-8", "replace")
        return await self._login(login, password)

    def cmd_AUTHENTICATE(self, tag: str, args: list) -> Any:
        """AUTHENTICATE PLAIN [initial-response] (RFC 4959 SASL-IR)."""
        if not 1 <= len(args) <= 2 or not isinstance(args[0], parser.Atom):
            raise Bad("Syntax: AUTHENTICATE mechanism [initial-response]")
        if args[0].upper() != "PLAIN":
            raise No("Unsupported authentication mechanism")
        if not self.login_allowed:
            raise No("[PRIVACYREQUIRED] Authentication is disabled until STARTTLS")
        if len(args) == 2:
            return self._sasl_plain(parser.astring(args[1]))
        self.send("+ ")
        self._sasl_tag = tag
        self.reader.raw = True
        return None

    async def _sasl_response(self, tag: str, line: bytes) -> None:
        if line.strip() == b"*":
            raise Bad("Authentication cancelled")
        text = await self._sasl_plain(line)
        self.tagged(tag, "OK", text)

    async def _sasl_plain(self, response: bytes) -> str:
        response = response.strip()
        try:
            decoded = b"" if response == b"=" else base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise Bad("Invalid base64 in the authentication response") from None
        fields = decoded.split(b"\x00")
        if len(fields) != 3:
            raise Bad("Invalid PLAIN authentication response")
        authzid, login, password = (f.decode("utf-8", "replace") for f in fields)
        if authzid and authzid != login:
            self._auth_failures += 1
            raise No("[AUTHORIZATIONFAILED] Logging in as another user is not allowed")
        return await self._login(login, password)

    async def _login(self, login: str, password: str) -> str:
        assert self.session is not None
        domain = self.listener.default_domain
        limiter = self.factory.authlimit
        account = limiter.account_key(login, domain)
        try:
            user = await limiter.attempt(
                self.peer_ip,
                account,
                lambda: password_login(self.factory.portal, login, password, domain),
                self.reactor,
            )
        except LoginBlocked as exc:
            self._log_login(login, "blocked")
            raise No(f"[UNAVAILABLE] {exc}") from None
        except DirectoryUnavailable as exc:
            self._log_login(login, f"directory unavailable ({exc})")
            raise No("[UNAVAILABLE] The user directory is not answering; try again later") from None
        if user is None or not user.enabled:
            self._log_login(login, "failed")
            self._auth_failures += 1
            if self._auth_failures >= MAX_AUTH_FAILURES:
                self.bye("Too many failed log-ins")
            raise No("[AUTHENTICATIONFAILED] Authentication failed")
        from mailmax.core.hooks import Scope

        assert self.plugins is not None
        verdict = await self.plugins.run_policy(
            "mailmax_auth",
            Scope(domain=user.domain, user=user.address, listener=self.listener.address),
            session=self.session,
            username=user.address,
        )
        if verdict.decisive and verdict.action is not Action.ACCEPT:
            self._log_login(user.address, f"refused by {verdict.plugin or 'policy'}")
            raise No(f"[AUTHENTICATIONFAILED] {one_line(verdict.text) or 'Log-in refused'}")
        proxied = await self._elsewhere(user, password)
        if proxied is not None:
            return proxied
        counts = self.factory.user_sessions
        if counts[user.address] >= self.limits.max_sessions_per_user:
            self._log_login(user.address, "refused: too many sessions")
            raise No("[LIMIT] Too many simultaneous connections for this user")
        counts[user.address] += 1  # held from now on, so concurrent log-ins count too
        self._counted, self.user = True, user
        try:
            maildir = await self.directory.user_maildir(user)
            store = MailStore(maildir, sync=store_sync_mode(self.settings.spool.sync))
            await self.blocking(self.prepare_mailbox, store, maildir)
        except BaseException:
            self.release_count()
            raise
        if self._closing:
            return "Logged in"
        self.maildir, self.store = Path(maildir), store
        self.open_folders = OpenFolders(store)
        self.session.auth_user = user.address
        self.state = "auth"
        self.touch()
        self._log_login(user.address, "ok")
        self.factory.logins.note(self.peer_ip, user.address)
        call = self.reactor.callLater(RECORD_LOGIN_DELAY, self.record_login)
        self._login_record = (user.address, call)
        return f"[CAPABILITY {self.capabilities()}] Logged in"

    async def _elsewhere(self, user: Any, password: str) -> str | None:
        """Clustered domains: for a user homed on another node, refer the client there or
        relay the session to it (the tagged OK text); None when the mailbox is here."""
        cluster = getattr(self.factory, "cluster", None)
        try:
            home = await proxy.home_elsewhere(cluster, self.directory, user)
            if not home:
                return None
            if cluster.settings.imap_logins == "referral":
                self._log_login(user.address, f"referred to node {home}")
                url = proxy.referral(cluster, home, user.address)
                raise No(f"[REFERRAL {url}] Your mailbox is on server {home}; log in there")
            upstream = await proxy.open_home(
                cluster, home, "imap", user.address, password, self.reactor
            )
        except proxy.ProxyError as exc:
            self._log_login(user.address, f"not proxied ({exc.text})")
            raise No(f"[{'UNAVAILABLE' if exc.temporary else 'CONTACTADMIN'}] {exc.text}") from None
        if self._closing:
            upstream.transport.loseConnection()
            return "Logged in"
        self.user, self.state = user, "proxied"
        self.reader.clear()  # nothing more is handled here
        self._log_login(user.address, f"ok, proxied to node {home}")
        self.factory.logins.note(self.peer_ip, user.address)

        def join() -> None:  # after the tagged OK is out: the home node speaks from then on
            if self._closing:
                upstream.transport.loseConnection()
            else:
                upstream.join(self)

        self.reactor.callLater(0, join)
        return f"Logged in (mailbox on server {home})"

    def record_login(self) -> None:
        """Write this session's log-in to the directory, if not done yet.

        Runs a moment after the log-in (or when the connection ends first), so that the
        commands a client sends right after logging in do not share the CPU with the write.
        """
        pending, self._login_record = self._login_record, None
        if pending is None:
            return
        address, call = pending
        if call.active():
            call.cancel()
        recorded = self.directory.record_login(address, "imap", self.peer_ip)
        if isinstance(recorded, defer.Deferred):
            recorded.addErrback(lambda f: log.failure("cannot record log-in", f))

    def release_count(self) -> None:
        """Give back this session's place in its user's session count."""
        if self._counted and self.user is not None:
            counts = self.factory.user_sessions
            counts[self.user.address] -= 1
            if counts[self.user.address] <= 0:
                del counts[self.user.address]
        self._counted = False
        if self.state == "not_auth":
            self.user = None

    def _log_login(self, login: str, outcome: str) -> None:
        self.note_login(login, outcome)
        mail_log.info(
            "login {login} {outcome} from {peer} session {session_id}",
            login=login,
            outcome=outcome,
            peer=self.peer_ip,
            session_id=self.session_id,
        )
