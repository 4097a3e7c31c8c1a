"""The POP3 server protocol and its factory.

RFC 1939 (POP3, APOP), RFC 2449 (CAPA, response codes), RFC 2595 (STLS), RFC 3206 (AUTH and
SYS response codes), RFC 5034 (SASL PLAIN). One command is handled at a time: input goes into a
bounded buffer and the next line is taken only when the previous command has answered, so
pipelined commands are answered in order. Messages are streamed byte for byte, dot-stuffed,
with flow control; only INBOX is visible. One POP3 session per mailbox at a time.
"""

from __future__ import annotations

import itertools
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, interfaces, protocol, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.model import Session
from mailmax.core.pop3.authorization import AuthorizationMixin
from mailmax.core.pop3.errors import POP3Error
from mailmax.core.pop3.maildrop import Maildrop
from mailmax.core.pop3.transaction import TransactionMixin
from mailmax.core.sessions import SessionSet
from mailmax.core.store.errors import MessageGone

if TYPE_CHECKING:
    from twisted.internet import ssl

    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.api import User
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet

log = Logger(namespace="mailmax.pop3")

PAUSE_INPUT = 64 * 1024
MAX_INPUT = 1024 * 1024
ABORT_AFTER = 5.0
MAX_LOGIN = 320
MAX_PASSWORD = 1024
_HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"})
_AUTH_COMMANDS = frozenset({"CAPA", "USER", "PASS", "APOP", "AUTH", "STLS", "QUIT"})
_TRANSACTION_COMMANDS = frozenset(
    {"CAPA", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "QUIT"}
)
_timestamps = itertools.count(1)
#: Control characters other than TAB, refused in commands.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class POP3Server(AuthorizationMixin, TransactionMixin, protocol.Protocol):
    """One POP3 session; command handlers are ``pop_<VERB>`` and may return a Deferred."""

    factory: POP3Factory

    def __init__(self, factory: POP3Factory) -> None:
        self.factory = factory
        self.reactor = factory.reactor
        self.directory = factory.directory
        self.listener = factory.listener
        self.session: Session | None = None
        self.timestamp = ""
        self.state = "authorization"  # authorization | transaction | closed
        self.user: User | None = None
        self.maildrop: Maildrop | None = None
        self._user_name: str | None = None
        self._sasl_pending = False
        self._inbox = bytearray()
        self._busy = False
        self._running = False
        self._paused = False
        self._discarding = False
        self._closing = False
        self._shutdown_pending = False
        self._timer: Any = None
        self._abort_call: Any = None

    # ------------------------------------------------------------------ connection
    def connectionMade(self) -> None:
        """Greet with the APOP timestamp."""
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.session = Session(
            session_id=uuid.uuid4().hex[:16],
            peer_ip=getattr(peer, "host", "") or "",
            peer_port=getattr(peer, "port", 0) or 0,
            local_ip=getattr(host, "host", "") or "",
            local_port=getattr(host, "port", 0) or 0,
            service=self.listener.service,
            listener_domain=self.listener.default_domain,
            tls=interfaces.ISSLTransport.providedBy(self.transport),
        )
        self.factory.sessions.add(self)
        log.info(
            "connection {session_id} from {peer} on {listener} ({service})",
            session_id=self.session.session_id,
            peer=f"{self.session.peer_ip}:{self.session.peer_port}",
            listener=f"{self.listener.address}:{self.session.local_port}",
            service=self.listener.service,
        )
        if self.factory.shutting_down:
            self._close("-ERR [SYS/TEMP] Server shutting down, try again later")
            return
        self.timestamp = self.factory.new_timestamp()
        self._touch()
        self._send(f"+OK {self.factory.greeting_name} POP3 MailMax ready {self.timestamp}")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Release the mailbox (without expunging) and forget the session."""
        self._closing = True
        self.state = "closed"
        self._inbox.clear()
        for call in (self._timer, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        drop, self.maildrop = self.maildrop, None
        if drop is not None:
            try:
                drop.close()
            except Exception:
                log.failure("cannot release the mailbox of {user}", user=self._who())
        self.factory.session_gone(self)

    def dataReceived(self, data: bytes) -> None:
        """Queue ``data`` and handle what can be handled now."""
        if self._closing:
            return
        self._touch()
        self._inbox += data
        self._process()

    # ------------------------------------------------------------------ input loop
    def _process(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            while not self._busy and not self._closing:
                line = self._next_line()
                if line is None:
                    break
                self._start(self._dispatch(line))
        finally:
            self._running = False
        self._flow_control()

    def _flow_control(self) -> None:
        if self._closing:
            return
        size = len(self._inbox)
        if size > MAX_INPUT:
            self._close("-ERR [SYS/PERM] Too much unprocessed input")
        elif size > PAUSE_INPUT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and size <= PAUSE_INPUT // 2:
            self._paused = False
            self.transport.resumeProducing()

    def _next_line(self) -> bytes | None:
        limit = self.factory.max_line
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
                if len(inbox) > limit:
                    inbox.clear()
                    self._discarding = True
                    self._error("Line too long")
                return None
            line = bytes(inbox[:newline])
            del inbox[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self._error("Line too long")
                continue
            return line
        return None

    def _start(self, result: defer.Deferred[Any] | None) -> None:
        if result is None:
            return
        self._busy = True
        result.addErrback(self._failed)
        result.addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._busy = False
        if self._shutdown_pending and not self._closing:
            self._close("-ERR [SYS/TEMP] Server shutting down, try again later")
            return
        self._process()

    def _failed(self, failure: Failure) -> None:
        if failure.check(POP3Error):
            self._error(failure.value.text)
            return
        log.failure("internal error in session {session_id}", failure, session_id=self._sid())
        if failure.check(MessageGone):
            self._error(str(failure.value))
        else:  # the reply may be half sent: nothing sensible can follow
            self._close("-ERR [SYS/TEMP] Internal error, try again later")

    def _dispatch(self, line: bytes) -> defer.Deferred[Any] | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._error("Invalid characters in command")
            return None
        if _CONTROL.search(text):
            self._error("Invalid characters in command")
            return None
        if self._sasl_pending:
            self._sasl_pending = False
            return self._sasl_response(text)
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if verb in _HTTP_VERBS:
            self._close("-ERR This is a POP3 server")
            return None
        allowed = _AUTH_COMMANDS if self.state == "authorization" else _TRANSACTION_COMMANDS
        handler: Callable[[str], Any] | None = getattr(self, f"pop_{verb}", None)
        if handler is None or not verb.isalpha():
            self._error("Unknown command")
            return None
        if verb not in allowed:
            self._error(f"{verb} is not allowed now")
            return None
        try:
            result = handler(arg if verb == "PASS" else arg.strip())
        except POP3Error as exc:
            self._error(exc.text)
            return None
        if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
            result = defer.ensureDeferred(result)
        return result

    # ------------------------------------------------------------------ output
    def _send(self, line: str) -> None:
        if not self._closing:
            self.transport.write(line.encode("utf-8", "replace") + b"\r\n")

    def _error(self, text: str) -> None:
        self._send(f"-ERR {text}")

    def _close(self, line: str | None = None) -> None:
        if self._closing:
            return
        if line is not None:
            self._send(line)
        self._closing = True
        self.state = "closed"
        self._inbox.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.transport.loseConnection()
        self._abort_call = self.reactor.callLater(ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    def _sid(self) -> str:
        return self.session.session_id if self.session else "-"

    def _who(self) -> str:
        return self.user.address if self.user else "-"

    # ------------------------------------------------------------------ timeouts, shutdown
    def _touch(self) -> None:
        if self._closing:
            return
        timeout = self.factory.client_timeout
        if self._timer is not None and self._timer.active():
            self._timer.reset(timeout)
        else:
            self._timer = self.reactor.callLater(timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self._busy:  # sending a message or waiting for the directory, not for the client
            self._timer = self.reactor.callLater(self.factory.client_timeout, self._timed_out)
            return
        log.info("session {session_id} timed out", session_id=self._sid())
        self._close("-ERR [SYS/TEMP] Idle too long, closing connection")

    def shutdown(self) -> None:
        """The server stops: close now when idle, else after the current command."""
        if self._busy:
            self._shutdown_pending = True
        else:
            self._close("-ERR [SYS/TEMP] Server shutting down, try again later")

    def force_close(self) -> None:
        """The grace period is over."""
        self._close("-ERR [SYS/TEMP] Server shutting down, try again later")

    def __repr__(self) -> str:
        return f"<POP3Server {self._sid()} {self.state}>"


class POP3Factory(SessionSet, protocol.ServerFactory):
    """Builds :class:`POP3Server` sessions for one listener and can stop them gracefully."""

    protocol = POP3Server  # type: ignore[assignment]

    def __init__(
        self,
        *,
        settings: Settings,
        listener: ListenerSettings,
        directory: AsyncDirectory,
        plugins: Callable[[], PluginSet],
        tls_options: ssl.CertificateOptions | None,
        reactor: Any = None,
        authlimit: AuthLimiter | None = None,
        logins: RecentLogins | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.listener = listener
        self.directory = directory
        self.plugins = plugins
        self.tls_options = tls_options
        self.reactor = reactor
        self.authlimit = authlimit if authlimit is not None else AuthLimiter.from_settings(settings)
        self.logins = logins if logins is not None else RecentLogins()
        self.init_sessions()

    # The settings sessions read, from the configuration current now (a reload replaces it).
    @property
    def allow_plaintext_auth(self) -> bool:
        """USER/PASS allowed without TLS."""
        return self.settings.pop3.allow_plaintext_auth

    @property
    def client_timeout(self) -> float:
        """Idle seconds before disconnect."""
        return self.settings.pop3.client_timeout

    @property
    def max_line(self) -> int:
        """Longest command line in bytes."""
        return self.settings.pop3.max_line

    @property
    def fsync(self) -> bool:
        """fsync mailbox changes."""
        return self.settings.spool.fsync

    @property
    def greeting_name(self) -> str:
        """The name in the greeting."""
        return self.listener.display_name or self.settings.server.hostname

    def buildProtocol(self, addr: Any) -> POP3Server:
        """A new session."""
        return POP3Server(self)

    def new_timestamp(self) -> str:
        """A unique APOP timestamp: ``<pid.time.counter@hostname>``."""
        hostname = self.settings.server.hostname
        return f"<{os.getpid()}.{time.time_ns()}.{next(_timestamps)}@{hostname}>"

    def blocking(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        """Run a blocking call (files, the mailbox index) in the reactor's thread pool."""
        return threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), function, *args, **kwargs
        )

    def policy(self, hook: str, session: Session, username: str) -> defer.Deferred[Any]:
        """Run a login policy hook with the plugin set current now."""
        from mailmax.core.hooks import Scope

        domain = username.rpartition("@")[2]
        scope = Scope(domain=domain, user=username, listener=self.listener.address)
        return self.plugins().run_policy(hook, scope, session=session, username=username)
