"""The ESMTP server protocol; its factory is in
:mod:`mailmax.core.smtp.factory`.

One command is handled at a time (the connection base,
:class:`~mailmax.core.net.connection.Connection`, takes the next line only when the previous
command has answered), so replies to pipelined commands always come in order. DATA is read
in raw mode by :class:`~mailmax.core.smtp.data.DataReader`; the 250 reply comes only once the
spool says the message is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.clientrights import ClientRights
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.hooks import Scope, start_eagerly
from mailmax.core.logfile import mail_logger
from mailmax.core.model import Envelope
from mailmax.core.net.connection import HTTP_VERBS, Connection
from mailmax.core.observe.redact import HIDDEN, redact_command
from mailmax.core.sendnow import write_now
from mailmax.core.smtp import commands, etrn
from mailmax.core.smtp.commands import SMTPReplyError
from mailmax.core.smtp.data import DataReader
from mailmax.core.smtp.login import LoginMixin
from mailmax.core.smtp.transaction import TransactionMixin
from mailmax.core.verdicts import Action, Verdict

if TYPE_CHECKING:
    from mailmax.core.hooks import PluginSet
    from mailmax.core.smtp.factory import SMTPFactory

log = Logger(namespace="mailmax.smtp")
#: The per-connection and per-message lines (the mail log; see :mod:`mailmax.core.logfile`).
mail_log = mail_logger("mailmax.smtp")

_COMMANDS = "HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH"


class SMTPServer(TransactionMixin, LoginMixin, Connection):
    """One SMTP session. Command handlers are ``smtp_<VERB>``; they may return a Deferred."""

    factory: SMTPFactory
    farewells: ClassVar[dict[str, str]] = {
        "input": "421 4.7.0 Too much unprocessed input",
        "timeout": "421 4.4.2 {host} Error: timeout exceeded",
        "shutdown": "421 4.3.2 Service shutting down",
        "limit": "421 4.7.0 {reason}",
        "banned": "554 5.7.1 {reason}",
    }

    def __init__(self, factory: SMTPFactory) -> None:
        super().__init__(factory)
        self.settings = factory.settings
        self.limits = factory.settings.smtp
        self.directory = factory.directory
        self.spool = factory.spool
        self.hostname = factory.settings.server.hostname
        self.plugins: PluginSet | None = None
        self.envelope: Envelope | None = None
        self._mode = "command"  # command | data | refused | closed
        self._reader: DataReader | None = None
        self._sasl: Any = None
        self._errors = 0
        self._committing = False
        self._dot_at = 0.0  # when the end of the message was read (for the timing trace)

    # ------------------------------------------------------------------ connection
    def connection_logger(self) -> Logger:
        """The mail log."""
        return mail_log

    @property
    def in_transaction(self) -> bool:
        """True while DATA is being received or committed to the spool."""
        return self._mode == "data" or self._committing

    def session_started(self) -> None:
        """Take the plugin set, run the connect hook, then greet."""
        self.plugins = self.factory.plugins()
        self.start_work(defer.ensureDeferred(self._greet()))

    def client_banned(self, rights: ClientRights) -> None:
        """Greet a banned client with ``554`` (RFC 5321 3.1), then refuse all but QUIT."""
        self.refuse_session(f"554 5.7.1 {rights.refusal}".encode("utf-8", "replace"))

    def refuse_session(self, greeting: bytes) -> None:
        """Send a ``554`` greeting; every later command but QUIT gets ``503`` (and counts as
        an error, so a client that goes on is closed after ``[smtp] max_errors``)."""
        self._mode = "refused"
        self._write(greeting)

    async def _greet(self) -> None:
        verdict = await self._policy("mailmax_connect")
        if verdict.decisive and verdict.action is not Action.ACCEPT:
            if verdict.action is Action.REJECT and verdict.code == 554:
                self.refuse_session(verdict.reply())
                return
            self._write(verdict.reply())
            self._close()
            return
        if self.factory.shutting_down:
            self._close(421, "4.3.2", "Service shutting down")
            return
        self._write(f"220 {self.greeting_name} ESMTP MailMax".encode())

    @property
    def greeting_name(self) -> str:
        """The name in the greeting and EHLO reply: the listener's display name or the hostname."""
        return self.listener.display_name or self.hostname

    def session_ended(self) -> None:
        """Drop the DATA reader."""
        self._mode = "closed"
        self._reader = None

    def take_input(self, data: bytes) -> None:
        """Keep ``data``; message data with nothing waiting before it goes to the reader now."""
        if self._mode == "data" and not self._inbox and not self._busy and not self._running:
            self._feed_data(data)
        else:
            self._inbox += data

    def idle_timeout(self) -> float:
        """``[smtp] client_timeout``."""
        return self.limits.client_timeout

    # ------------------------------------------------------------------ input loop
    def handle_next(self) -> bool:
        """Feed waiting message data to the DATA reader, or start the next command."""
        if self._mode == "data":
            if not self._inbox:
                return False
            data = bytes(self._inbox)
            self._inbox.clear()
            self._feed_data(data)
            return True
        line = self.next_line(self.limits.max_command_line)
        if line is None:
            return False
        self.start_work(self._dispatch(line))
        return True

    def _feed_data(self, data: bytes) -> None:
        assert self._reader is not None
        rest = self._reader.feed(data)
        if rest is None:
            return
        self._inbox[:0] = rest
        self._mode = "command"
        self._committing = True
        self.start_work(defer.ensureDeferred(self.finish_message()))

    def line_too_long(self) -> None:
        """500 5.5.2 (counts as an error)."""
        self._error(SMTPReplyError(500, "5.5.2", "Line too long"))

    def command_failed(self, failure: Failure, *args: Any) -> None:
        """Reply to a refusal raised by a handler; 451 for anything unexpected."""
        if failure.check(SMTPReplyError):
            self._error(failure.value)
            return
        if failure.check(DirectoryUnavailable):
            log.warn(
                "session {session_id}: {error}",
                error=str(failure.value),
                session_id=self.session.session_id if self.session else "",
            )
            self._committing = False
            self._reply(451, "4.4.3", "The user directory is not answering; try again later")
            return
        log.failure(
            "internal error in session {session_id}",
            failure,
            session_id=self.session.session_id if self.session else "",
        )
        self.emit("errors", f"internal error: {failure.getErrorMessage()}")
        self._committing = False
        self._dot_at = 0.0  # when the end of the message was read (for the timing trace)
        self._reply(451, "4.3.0", "Local error in processing, try again later")

    def _dispatch(self, line: bytes) -> defer.Deferred[Any] | None:
        if self.factory.events.active:
            self.trace_command(
                HIDDEN
                if self._sasl is not None
                else redact_command(line.decode("utf-8", "replace"))
            )
        if self._sasl is not None:
            return self.auth_response(line)
        try:
            command = commands.parse_command(line)
        except SMTPReplyError as exc:
            self._error(exc)
            return None
        if self._mode == "refused" and command.verb != "QUIT":
            self._error(SMTPReplyError(503, "5.7.1", "This client is refused here; send QUIT"))
            return None
        if command.verb in HTTP_VERBS:
            self._close(421, "4.7.0", "This is an SMTP server, closing")
            return None
        handler: Callable[[str], Any] | None = getattr(self, f"smtp_{command.verb}", None)
        if handler is None:
            self._error(SMTPReplyError(500, "5.5.2", "Command unrecognized"))
            return None
        try:
            result = handler(command.arg)
            if type(result) is CoroutineType:
                # most commands never wait: no Deferred for those
                done, result = start_eagerly(result)
                if done:
                    result = None
                    self.shutdown_if_due()
        except SMTPReplyError as exc:
            self._error(exc)
            return None
        except Exception:
            self.command_failed(Failure())
            return None
        if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
            result = defer.ensureDeferred(result)
        return result

    # ------------------------------------------------------------------ output
    def _write(self, data: bytes) -> None:
        if not self._closing:  # write_line, one call less on the hot path
            if self.factory.events.active:
                self.trace_reply(data)
            write_now(self.transport, data + b"\r\n")

    def _reply(self, code: int, status: str, text: str) -> None:
        self._write(f"{code} {status} {text}".encode("utf-8", "replace"))

    def reply_error(self, exc: SMTPReplyError) -> None:
        """Send the reply an :class:`SMTPReplyError` carries (not counted as a client error)."""
        self._reply(exc.code, exc.status, exc.text)

    def _error(self, exc: SMTPReplyError) -> None:
        """Reply to a bad command; too many of them close the session."""
        self.reply_error(exc)
        if isinstance(exc, commands.SMTPRefusal):
            return
        self.emit("errors", f"{exc.code} {exc.status} {exc.text}")
        self._errors += 1
        if self._errors >= self.limits.max_errors and not self._closing:
            log.info(
                "session {session_id} closed after {errors} errors",
                session_id=self.session.session_id if self.session else "",
                errors=self._errors,
            )
            self._close(421, "4.7.0", "Too many errors, closing connection")

    def refused(self, verdict: Verdict) -> bool:
        """Send a decisive refusal; True when the command must stop there."""
        if not verdict.decisive or verdict.action is Action.ACCEPT:
            return False
        self._write(verdict.reply())
        if verdict.action is Action.DISCONNECT:
            self._close()
        return True

    def _close(self, code: int | None = None, status: str = "", text: str = "") -> None:
        """Optionally reply, then close the connection (aborting it if it will not flush)."""
        self.hang_up(None if code is None else f"{code} {status} {text}")

    def hang_up(self, final: str | None = None) -> None:
        """Close (see the base); no more commands nor message data."""
        if not self._closing:
            self._mode = "closed"
        super().hang_up(final)

    # ------------------------------------------------------------------ helpers for handlers
    def _policy(self, hook: str, scope: Any = None, **kwargs: Any) -> defer.Deferred[Verdict]:
        if scope is None:
            scope = Scope(listener=self.listener.address)
        assert self.plugins is not None
        return self.plugins.run_policy(hook, scope, session=self.session, **kwargs)

    def reset_transaction(self) -> None:
        """Forget the current MAIL transaction."""
        self.envelope = None
        self.recipient_limits: list[int] = []
        self.recipient_scopes: list[Scope] = []
        self.rcpt_commands = 0
        self.recipient_boxes: list[Any] = []
        self.data_profile: Any = None

    @property
    def auth_allowed(self) -> bool:
        """AUTH is offered on TLS connections, and without TLS only when configured so."""
        assert self.session is not None
        return self.session.tls or self.limits.allow_plaintext_auth

    # ------------------------------------------------------------------ session commands
    async def smtp_EHLO(self, arg: str) -> None:
        """EHLO: greet and list exactly the extensions implemented."""
        await self._hello(arg, esmtp=True)

    async def smtp_HELO(self, arg: str) -> None:
        """HELO: plain SMTP greeting."""
        await self._hello(arg, esmtp=False)

    async def _hello(self, arg: str, esmtp: bool) -> None:
        verb = "EHLO" if esmtp else "HELO"
        words = arg.split()
        if len(words) != 1 or len(words[0]) > 255 or not words[0].isascii():
            raise SMTPReplyError(501, "5.5.4", f"Syntax: {verb} hostname")
        helo = words[0]
        verdict = await self._policy("mailmax_helo", helo=helo)
        if self.refused(verdict):
            return
        session = self.session
        assert session is not None
        session.helo, session.esmtp = helo, esmtp
        self.reset_transaction()
        if not esmtp:
            self._write(f"250 {self.greeting_name}".encode())
            return
        lines = [
            self.greeting_name,
            f"SIZE {self.limits.max_message_size}",
            "PIPELINING",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
        ]
        if self.factory.tls_options is not None and not session.tls:
            lines.append("STARTTLS")
        if self.auth_allowed:
            lines.append("AUTH PLAIN LOGIN" + ("" if session.tls else " CRAM-MD5"))
        if etrn.offered(self):
            lines.append("ETRN")
        out = [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]
        self._write("\r\n".join(out).encode())

    def smtp_NOOP(self, arg: str) -> None:
        """NOOP: nothing (an argument is allowed and ignored)."""
        self._reply(250, "2.0.0", "Ok")

    def smtp_RSET(self, arg: str) -> None:
        """RSET: abandon the transaction."""
        if arg:
            raise SMTPReplyError(501, "5.5.4", "Syntax: RSET")
        self.reset_transaction()
        self._reply(250, "2.0.0", "Ok")

    def smtp_QUIT(self, arg: str) -> None:
        """QUIT: say goodbye and close."""
        self._close(221, "2.0.0", "Bye")

    def smtp_HELP(self, arg: str) -> None:
        """HELP: the command list."""
        self._reply(214, "2.0.0", f"Commands: {_COMMANDS}")

    def smtp_ETRN(self, arg: str) -> Any:
        """ETRN (RFC 1985): send the mail held for a domain (:mod:`mailmax.core.smtp.etrn`)."""
        return etrn.handle(self, arg)

    def smtp_EXPN(self, arg: str) -> None:
        """EXPN is never offered (it discloses list members)."""
        self._reply(502, "5.5.1", "EXPN not available")

    def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS (RFC 3207): drop pipelined input, start TLS, forget everything said before."""
        session = self.session
        assert session is not None
        if arg:
            raise SMTPReplyError(501, "5.5.4", "Syntax: STARTTLS")
        if session.tls:
            raise SMTPReplyError(503, "5.5.1", "TLS already active")
        if self.factory.tls_options is None:
            raise SMTPReplyError(502, "5.5.1", "STARTTLS not available")
        self._reply(220, "2.0.0", "Ready to start TLS")
        self.start_tls()
        session.helo, session.esmtp, session.auth_user = "", False, None
        self._sasl = None
        self.reset_transaction()

    async def smtp_VRFY(self, arg: str) -> None:
        """VRFY: answer only when ``allow_vrfy`` is set."""
        if not arg:
            raise SMTPReplyError(501, "5.5.4", "Syntax: VRFY <address>")
        if not self.limits.allow_vrfy:
            self._reply(
                252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"
            )
            return
        text = arg.strip().strip("<>")
        if "@" not in text and self.listener.default_domain:
            text = f"{text}@{self.listener.default_domain}"
        address = commands.parse_mailbox(text)
        if address.literal or address.routing_hack or not address.domain:
            self._reply(252, "2.5.2", "Cannot VRFY that address")
            return
        await self.vrfy_lookup(address)

    def __repr__(self) -> str:
        session_id = self.session.session_id if self.session else "-"
        return f"<SMTPServer {session_id} {self._mode}>"
