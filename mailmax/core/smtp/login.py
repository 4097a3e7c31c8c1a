"""SMTP AUTH for a session (RFC 4954): the command, the SASL exchange, the login.

A mixin of :class:`~mailmax.core.smtp.server.SMTPServer`. The mechanisms themselves live in
:mod:`mailmax.core.smtp.auth`; the directory checks the password (and resolves the login-name
forms with the listener's default domain), through the server's ``twisted.cred`` portal
(:mod:`mailmax.core.credentials`); plugins may still refuse the login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.authlimit import AuthLimiter, LoginBlocked
from mailmax.core.credentials import hashed_login, password_login
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.directory.mixed import ClearPasswordNotKept
from mailmax.core.pluginhost import dataphase
from mailmax.core.smtp import auth
from mailmax.core.smtp.commands import SMTPReplyError
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.directory.api import User
    from mailmax.core.smtp.server import SMTPServer

    _Base = SMTPServer
else:
    _Base = object

log = Logger(namespace="mailmax.smtp")


class LoginMixin(_Base):
    """AUTH for :class:`SMTPServer`."""

    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH mechanism [initial-response] (RFC 4954)."""
        session = self.session
        assert session is not None
        if not session.esmtp:
            raise SMTPReplyError(503, "5.5.1", "Send EHLO first")
        if session.auth_user is not None:
            raise SMTPReplyError(503, "5.5.1", "Already authenticated")
        if self.envelope is not None:
            raise SMTPReplyError(503, "5.5.1", "AUTH not allowed during a mail transaction")
        if not self.auth_allowed:
            raise SMTPReplyError(
                538, "5.7.11", "Encryption required for requested authentication mechanism"
            )
        words = arg.split()
        if not 1 <= len(words) <= 2:
            raise SMTPReplyError(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        mechanism = auth.make_mechanism(words[0].upper(), self.hostname)
        if mechanism is None:
            raise SMTPReplyError(504, "5.5.4", "Unrecognized authentication type")
        initial = auth.decode_response(words[1].encode()) if len(words) == 2 else None
        result = self._sasl_next(mechanism, mechanism.start(initial))
        if result is not None:
            await result

    def auth_response(self, line: bytes) -> defer.Deferred[None] | None:
        """The client answered a ``334`` challenge."""
        mechanism, self._sasl = self._sasl, None
        try:
            step = mechanism.step(auth.decode_response(line))
        except SMTPReplyError as exc:
            self._error(exc)
            return None
        return self._sasl_next(mechanism, step)

    def _sasl_next(self, mechanism: auth.Mechanism, step: auth.Step) -> defer.Deferred[None] | None:
        if isinstance(step, bytes):
            self._sasl = mechanism
            self._write(auth.encode_challenge(step))
            return None
        return defer.ensureDeferred(self._login(step))

    async def _login(self, credentials: auth.Credentials) -> None:
        session = self.session
        assert session is not None
        domain = self.listener.default_domain
        account = AuthLimiter.account_key(credentials.login, domain)
        try:
            user = await self.factory.authlimit.attempt(
                session.peer_ip, account, lambda: self._check(credentials), self.reactor
            )
        except LoginBlocked as exc:
            self._log_login(credentials.login, "blocked")
            raise SMTPReplyError(454, "4.7.0", f"Temporary authentication failure: {exc}") from None
        except DirectoryUnavailable as exc:
            self._log_login(credentials.login, f"directory unavailable ({exc})")
            raise SMTPReplyError(
                454,
                "4.7.0",
                "Temporary authentication failure: the user directory is not"
                " answering; try again later",
            ) from None
        except ClearPasswordNotKept as exc:
            self._log_login(credentials.login, "refused: no clear password")
            raise SMTPReplyError(
                534, "5.7.9", f"Authentication mechanism is too weak: {exc}"
            ) from None
        if user is None:
            self._log_login(credentials.login, "failed")
            raise SMTPReplyError(535, "5.7.8", "Authentication credentials invalid")
        verdict = await self._policy(
            "mailmax_auth",
            dataphase.login_scope(user.address, self.listener.address),
            username=user.address,
        )
        if verdict.decisive and verdict.action is not Action.ACCEPT:
            self._log_login(user.address, f"refused by {verdict.plugin or 'policy'}")
            self.refused(verdict)
            return
        session.auth_user = user.address
        self._log_login(user.address, "ok")
        recorded = self.directory.record_login(user.address, "smtp", session.peer_ip)
        if isinstance(recorded, defer.Deferred):
            recorded.addErrback(lambda f: log.failure("cannot record login", f))
        self._reply(235, "2.7.0", "Authentication successful")

    async def _check(self, credentials: auth.Credentials) -> User | None:
        """The user the credentials prove, or None (also for accounts that may not use AUTH)."""
        domain = self.listener.default_domain
        portal = self.factory.portal
        if credentials.digest is not None:
            user = await hashed_login(portal, credentials.login, credentials.verify_cram, domain)
        else:
            assert credentials.password is not None
            user = await password_login(portal, credentials.login, credentials.password, domain)
        if user is None or not user.enabled or user.smtp_auth_disabled:
            return None
        return user

    def _log_login(self, login: str, outcome: str) -> None:
        assert self.session is not None
        self.note_login(login, outcome)
        log.info(
            "login {login} {outcome} from {peer} session {session_id}",
            login=login,
            outcome=outcome,
            peer=self.session.peer_ip,
            session_id=self.session.session_id,
        )
