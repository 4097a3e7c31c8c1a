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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.model import Session
from mailmax.core.net.connection import HTTP_VERBS, Connection
from mailmax.core.net.factory import ListenerFactory
from mailmax.core.observe.redact import HIDDEN, redact_command
from mailmax.core.pop3.authorization import AuthorizationMixin
from mailmax.core.pop3.errors import POP3Error
from mailmax.core.pop3.maildrop import Maildrop
from mailmax.core.pop3.transaction import TransactionMixin
from mailmax.core.store.errors import MessageGone

if TYPE_CHECKING:
    from mailmax.core.directory.api import User

log = Logger(namespace="mailmax.pop3")

MAX_LOGIN = 320
MAX_PASSWORD = 1024
_AUTH_COMMANDS = frozenset({"CAPA", "USER", "PASS", "APOP", "AUTH", "STLS", "QUIT"})
_TRANSACTION_COMMANDS = frozenset(
    {"CAPA", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "QUIT"}
)
_timestamps = itertools.count(1)
#: Control characters other than TAB, refused in commands.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class POP3Server(AuthorizationMixin, TransactionMixin, Connection):
    """One POP3 session; command handlers are ``pop_<VERB>`` and may return a Deferred."""

    factory: POP3Factory
    farewells: ClassVar[dict[str, str]] = {
        "input": "-ERR [SYS/PERM] Too much unprocessed input",
        "timeout": "-ERR [SYS/TEMP] Idle too long, closing connection",
        "shutdown": "-ERR [SYS/TEMP] Server shutting down, try again later",
        "limit": "-ERR [SYS/TEMP] {reason}",
        "banned": "-ERR [SYS/PERM] {reason}",
    }

    def __init__(self, factory: POP3Factory) -> None:
        super().__init__(factory)
        self.directory = factory.directory
        self.timestamp = ""
        self.state = "authorization"  # authorization | transaction | closed
        self.user: User | None = None
        self.maildrop: Maildrop | None = None
        self._user_name: str | None = None
        self._sasl_pending = False

    # ------------------------------------------------------------------ connection
    def connection_logger(self) -> Logger:
        """The POP3 log."""
        return log

    def session_started(self) -> None:
        """Greet with the APOP timestamp."""
        if self.factory.shutting_down:
            self.say_goodbye("shutdown")
            return
        self.timestamp = self.factory.new_timestamp()
        self._send(f"+OK {self.factory.greeting_name} POP3 MailMax ready {self.timestamp}")

    def session_ended(self) -> None:
        """Release the mailbox (without expunging)."""
        self.state = "closed"
        drop, self.maildrop = self.maildrop, None
        if drop is not None:
            try:
                drop.close()
            except Exception:
                log.failure("cannot release the mailbox of {user}", user=self._who())

    def idle_timeout(self) -> float:
        """``[pop3] client_timeout``."""
        return self.factory.client_timeout

    # ------------------------------------------------------------------ input loop
    def handle_next(self) -> bool:
        """Start the next command."""
        line = self.next_line(self.factory.max_line)
        if line is None:
            return False
        self.start_work(self._dispatch(line))
        return True

    def line_too_long(self) -> None:
        """-ERR Line too long."""
        self._error("Line too long")

    def command_failed(self, failure: Failure, *args: Any) -> None:
        """Answer a refusal; an unexpected failure closes (the reply may be half sent)."""
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
        if self.factory.events.active:
            self.trace_command(HIDDEN if self._sasl_pending else redact_command(text))
        if self._sasl_pending:
            self._sasl_pending = False
            return self._sasl_response(text)
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if verb in HTTP_VERBS:
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
        self.write_line(line.encode("utf-8", "replace"))

    def _error(self, text: str) -> None:
        self.emit("errors", f"-ERR {text}")
        self._send(f"-ERR {text}")

    def _close(self, line: str | None = None) -> None:
        self.hang_up(line)

    def hang_up(self, final: str | None = None) -> None:
        """Close (see the base); no more commands."""
        if not self._closing:
            self.state = "closed"
        super().hang_up(final)

    def _sid(self) -> str:
        return self.session.session_id if self.session else "-"

    def _who(self) -> str:
        return self.user.address if self.user else "-"

    def __repr__(self) -> str:
        return f"<POP3Server {self._sid()} {self.state}>"


class POP3Factory(ListenerFactory):
    """Builds :class:`POP3Server` sessions for one listener and can stop them gracefully."""

    protocol = POP3Server  # type: ignore[assignment]

    def __init__(self, **common: Any) -> None:
        """``common`` is :class:`~mailmax.core.net.factory.ListenerFactory`'s."""
        super().__init__(**common)

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
