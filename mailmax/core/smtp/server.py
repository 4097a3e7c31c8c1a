"""The ESMTP server protocol and its factory.

One command is handled at a time: bytes go into a bounded input buffer, the next line is taken
only when the previous command has answered (directory look-ups and plugins are asynchronous),
so replies to pipelined commands always come in order. DATA is read in raw mode by
:class:`~mailmax.core.smtp.data.DataReader`; the 250 reply comes only once the spool says the
message is durable.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.config import parse_networks
from mailmax.core.hooks import Scope
from mailmax.core.logfile import mail_logger
from mailmax.core.model import Envelope, Session
from mailmax.core.sendnow import write_now
from mailmax.core.sessions import SessionSet
from mailmax.core.smtp import commands, etrn
from mailmax.core.smtp.commands import SMTPReplyError
from mailmax.core.smtp.data import DataReader
from mailmax.core.smtp.login import LoginMixin
from mailmax.core.smtp.transaction import TransactionMixin
from mailmax.core.verdicts import Action, Verdict

if TYPE_CHECKING:
    from twisted.internet import ssl

    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet
    from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.smtp")
#: The per-connection and per-message lines (the mail log; see :mod:`mailmax.core.logfile`).
mail_log = mail_logger("mailmax.smtp")

#: Unprocessed input above this many bytes pauses reading from the client.
PAUSE_INPUT = 64 * 1024
#: Unprocessed input above this many bytes (a client ignoring flow control) closes the session.
MAX_INPUT = 1024 * 1024
#: Seconds a closing connection gets to flush before it is aborted.
ABORT_AFTER = 5.0
_HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"})
_COMMANDS = "HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH"


class SMTPServer(TransactionMixin, LoginMixin, protocol.Protocol):
    """One SMTP session. Command handlers are ``smtp_<VERB>``; they may return a Deferred."""

    factory: SMTPFactory

    def __init__(self, factory: SMTPFactory) -> None:
        self.factory = factory
        self.settings = factory.settings
        self.limits = factory.settings.smtp
        self.listener = factory.listener
        self.directory = factory.directory
        self.spool = factory.spool
        self.reactor = factory.reactor
        self.hostname = factory.settings.server.hostname
        self.plugins: PluginSet | None = None
        self.session: Session | None = None
        self.envelope: Envelope | None = None
        self._inbox = bytearray()
        self._mode = "command"  # command | data | closed
        self._reader: DataReader | None = None
        self._sasl: Any = None
        self._busy = False
        self._running = False
        self._paused = False
        self._discarding = False
        self._closing = False
        self._errors = 0
        self._committing = False
        self._shutdown_pending = False
        self._timer: Any = None
        self._abort_call: Any = None

    # ------------------------------------------------------------------ connection
    @property
    def in_transaction(self) -> bool:
        """True while DATA is being received or committed to the spool."""
        return self._mode == "data" or self._committing

    def connectionMade(self) -> None:
        """Build the session, run the connect hook, then greet."""
        self.plugins = self.factory.plugins()
        peer, host = self.transport.getPeer(), self.transport.getHost()
        peer_ip = getattr(peer, "host", "") or ""
        self.session = Session(
            session_id=uuid.uuid4().hex[:16],
            peer_ip=peer_ip,
            peer_port=getattr(peer, "port", 0) or 0,
            local_ip=getattr(host, "host", "") or "",
            local_port=getattr(host, "port", 0) or 0,
            service=self.listener.service,
            listener_domain=self.listener.default_domain,
            tls=interfaces.ISSLTransport.providedBy(self.transport),
        )
        if self.factory.is_trusted(peer_ip):
            self.session.trusted = self.session.relay_allowed = True
        self.factory.sessions.add(self)
        mail_log.info(
            "connection {session_id} from {peer} on {listener} ({service})",
            session_id=self.session.session_id,
            peer=f"{peer_ip}:{self.session.peer_port}",
            listener=f"{self.listener.address}:{self.session.local_port}",
            service=self.listener.service,
        )
        self._touch()
        self._start_async(defer.ensureDeferred(self._greet()))

    async def _greet(self) -> None:
        verdict = await self._policy("mailmax_connect")
        if verdict.decisive and verdict.action is not Action.ACCEPT:
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

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Forget the session; let a pending shutdown know."""
        self._closing = True
        self._mode = "closed"
        self._inbox.clear()
        self._reader = None
        for call in (self._timer, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self.factory.session_gone(self)

    def dataReceived(self, data: bytes) -> None:
        """Queue ``data``; handle as much as can be handled now."""
        if self._closing:
            return
        self._touch()
        if self._mode == "data" and not self._inbox and not self._busy and not self._running:
            self._feed_data(data)
        else:
            self._inbox += data
        self._process()

    # ------------------------------------------------------------------ input loop
    def _process(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while not self._busy and not self._closing:
                if self._mode == "data":
                    if not self._inbox:
                        break
                    data = bytes(self._inbox)
                    self._inbox.clear()
                    self._feed_data(data)
                    continue
                line = self._next_line()
                if line is None:
                    break
                self._start_async(self._dispatch(line))
        finally:
            self._running = False
        self._flow_control()

    def _feed_data(self, data: bytes) -> None:
        assert self._reader is not None
        rest = self._reader.feed(data)
        if rest is None:
            return
        self._inbox[:0] = rest
        self._mode = "command"
        self._committing = True
        self._start_async(defer.ensureDeferred(self.finish_message()))

    def _flow_control(self) -> None:
        if self._closing:
            return
        size = len(self._inbox)
        if size > MAX_INPUT:
            self._close(421, "4.7.0", "Too much unprocessed input")
        elif size > PAUSE_INPUT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and size <= PAUSE_INPUT // 2:
            self._paused = False
            self.transport.resumeProducing()

    def _next_line(self) -> bytes | None:
        """The next command line without its line end, or ``None`` until one is complete."""
        limit = self.limits.max_command_line
        inbox = self._inbox
        while not self._closing:
            newline = inbox.find(b"\n")
            if self._discarding:
                if newline < 0:
                    inbox.clear()
                    return None
                del inbox[: newline + 1]
                self._discarding = False
                continue
            if newline < 0:
                if len(inbox) > limit + 1:  # room for the CR of a line of exactly ``limit``
                    inbox.clear()
                    self._discarding = True
                    self._error(SMTPReplyError(500, "5.5.2", "Line too long"))
                return None
            line = bytes(inbox[:newline])
            del inbox[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self._error(SMTPReplyError(500, "5.5.2", "Line too long"))
                continue
            return line
        return None

    def _start_async(self, result: defer.Deferred[Any] | None) -> None:
        if result is None:
            return
        self._busy = True
        result.addErrback(self._command_failed)
        result.addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._busy = False
        if self._shutdown_pending and not self.in_transaction and not self._closing:
            self._close(421, "4.3.2", "Service shutting down")
            return
        self._process()

    def _command_failed(self, failure: Failure) -> None:
        if failure.check(SMTPReplyError):
            self._error(failure.value)
            return
        log.failure(
            "internal error in session {session_id}",
            failure,
            session_id=self.session.session_id if self.session else "",
        )
        self._committing = False
        self._reply(451, "4.3.0", "Local error in processing, try again later")

    def _dispatch(self, line: bytes) -> defer.Deferred[Any] | None:
        if self._sasl is not None:
            return self.auth_response(line)
        try:
            command = commands.parse_command(line)
        except SMTPReplyError as exc:
            self._error(exc)
            return None
        if command.verb in _HTTP_VERBS:
            self._close(421, "4.7.0", "This is an SMTP server, closing")
            return None
        handler: Callable[[str], Any] | None = getattr(self, f"smtp_{command.verb}", None)
        if handler is None:
            self._error(SMTPReplyError(500, "5.5.2", "Command unrecognized"))
            return None
        try:
            result = handler(command.arg)
        except SMTPReplyError as exc:
            self._error(exc)
            return None
        except Exception:
            self._command_failed(Failure())
            return None
        if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
            result = defer.ensureDeferred(result)
        return result

    # ------------------------------------------------------------------ output
    def _write(self, data: bytes) -> None:
        if self._closing:
            return
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
        if self._closing:
            return
        if code is not None:
            self._reply(code, status, text)
        self._closing = True
        self._mode = "closed"
        self._inbox.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.transport.loseConnection()
        self._abort_call = self.reactor.callLater(ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    # ------------------------------------------------------------------ timeouts, shutdown
    def _touch(self) -> None:
        if self._closing:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.limits.client_timeout)
        else:
            self._timer = self.reactor.callLater(self.limits.client_timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self._busy:  # waiting for us, not for the client
            self._timer = self.reactor.callLater(self.limits.client_timeout, self._timed_out)
            return
        log.info("session {session_id} timed out", session_id=self.session.session_id)
        self._close(421, "4.4.2", f"{self.hostname} Error: timeout exceeded")

    def shutdown(self) -> None:
        """The server stops: close now when idle, else after the command or transaction."""
        if self._busy or self.in_transaction:
            self._shutdown_pending = True
        else:
            self._close(421, "4.3.2", "Service shutting down")

    def force_close(self) -> None:
        """The grace period is over: say so and close, whatever is going on."""
        self._close(421, "4.3.2", "Service shutting down")

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
        self._inbox.clear()
        self.transport.startTLS(self.factory.tls_options)
        session.tls = True
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


class SMTPFactory(SessionSet, protocol.ServerFactory):
    """Builds :class:`SMTPServer` sessions for one listener and can stop them gracefully."""

    noisy = False  # sessions log their own connection line

    def __init__(
        self,
        *,
        settings: Settings,
        listener: ListenerSettings,
        directory: AsyncDirectory,
        spool: Spool,
        plugins: Callable[[], PluginSet],
        tls_options: ssl.CertificateOptions | None,
        reactor: Any = None,
        authlimit: AuthLimiter | None = None,
        logins: RecentLogins | None = None,
    ) -> None:
        """``authlimit`` (failed-login throttling) and ``logins`` (POP/IMAP-before-SMTP) are
        shared with the other services; each defaults to one of this factory's own."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.listener = listener
        self.directory = directory
        self.spool = spool
        self.plugins = plugins
        self.tls_options = tls_options
        self.reactor = reactor
        self.authlimit = authlimit if authlimit is not None else AuthLimiter.from_settings(settings)
        self.logins = logins if logins is not None else RecentLogins()
        self.init_sessions()

    def buildProtocol(self, addr: Any) -> SMTPServer:
        """A new session."""
        return SMTPServer(self)

    def is_trusted(self, ip: str) -> bool:
        """True when ``ip`` is in ``[smtp] trusted_networks`` (of the settings current now)."""
        networks = parse_networks(tuple(self.settings.smtp.trusted_networks))
        if not networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in networks)
