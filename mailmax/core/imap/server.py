"""The IMAP4rev1 server protocol (RFC 3501 and extensions).

MailMax's own protocol on :class:`twisted.internet.protocol.Protocol`: Twisted carries bytes,
TLS and timers; every IMAP behaviour is here and tested. Commands run one at a time, in order
(a command may wait for the directory or the mailbox store, which work in threads), so
replies to pipelined commands never interleave. Input is framed by
:class:`~mailmax.core.imap.parser.CommandReader`, which stops at each literal so that sizes
and quotas are checked before the ``+`` continuation is sent.

Authenticated-state commands live in :mod:`mailmax.core.imap.folders`, selected-state ones
in :mod:`mailmax.core.imap.selected` and :mod:`mailmax.core.imap.messages`; sessions are
built by :class:`mailmax.core.imap.factory.IMAPFactory`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.imap import parser
from mailmax.core.imap.auth import AuthCommands, one_line
from mailmax.core.imap.errors import Bad, IMAPError
from mailmax.core.imap.folders import FolderCommands
from mailmax.core.imap.messages import MessageCommands
from mailmax.core.imap.selected import SelectedCommands
from mailmax.core.imap.stream import Streamer
from mailmax.core.logfile import mail_logger
from mailmax.core.net.connection import Connection
from mailmax.core.observe.redact import redact_command
from mailmax.core.quickack import ack_now
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.openfolders import OpenFolders
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.directory.api import User
    from mailmax.core.hooks import PluginSet
    from mailmax.core.imap.factory import IMAPFactory

log = Logger(namespace="mailmax.imap")
#: The per-session lines (connection, log-in, log-out): the mail log (see ``logfile``).
mail_log = mail_logger("mailmax.imap")

#: Largest literal before log-in (a user name or password).
PREAUTH_LITERAL = 8 * 1024
#: Largest literal of any command but APPEND's message.
SMALL_LITERAL = 64 * 1024
#: Consecutive BAD commands before the server says BYE.
MAX_BAD = 20

_ANY, _NOT_AUTH, _AUTH, _SELECTED = "any", "not_auth", "auth", "selected"
#: Commands that have just reported the mailbox's state: no refresh after them.
_FRESH = frozenset({"SELECT", "EXAMINE"})
_STATES = {
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,
    "STARTTLS": _NOT_AUTH,
    "LOGIN": _NOT_AUTH,
    "AUTHENTICATE": _NOT_AUTH,
    "SELECT": _AUTH,
    "EXAMINE": _AUTH,
    "CREATE": _AUTH,
    "DELETE": _AUTH,
    "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH,
    "UNSUBSCRIBE": _AUTH,
    "LIST": _AUTH,
    "LSUB": _AUTH,
    "STATUS": _AUTH,
    "APPEND": _AUTH,
    "NAMESPACE": _AUTH,
    "ENABLE": _AUTH,
    "GETQUOTA": _AUTH,
    "GETQUOTAROOT": _AUTH,
    "SETQUOTA": _AUTH,
    "IDLE": _AUTH,
    "CHECK": _SELECTED,
    "CLOSE": _SELECTED,
    "UNSELECT": _SELECTED,
    "EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED,
    "FETCH": _SELECTED,
    "STORE": _SELECTED,
    "COPY": _SELECTED,
    "MOVE": _SELECTED,
    "UID": _SELECTED,
}


class IMAPServer(Connection, AuthCommands, MessageCommands, SelectedCommands, FolderCommands):
    """One IMAP session. Handlers are ``cmd_<NAME>(tag, args)``.

    A handler returns the text of the tagged OK (``"[CODE] text"`` allowed), or None when it
    replied itself; it may be a coroutine. It raises :class:`No` or :class:`Bad` to fail.
    """

    factory: IMAPFactory
    farewells: ClassVar[dict[str, str]] = {
        "input": "* BYE Too much unprocessed input",
        "timeout": "* BYE Autologout; idle for too long",
        "shutdown": "* BYE Server shutting down",
        "limit": "* BYE {reason}",
        "banned": "* BYE {reason}",
    }
    pause_input = 256 * 1024
    max_input = 0  # the command reader bounds what it keeps
    no_delay = True  # replies end in a small tagged line

    def __init__(self, factory: IMAPFactory) -> None:
        super().__init__(factory)
        self.settings = factory.settings
        self.limits = factory.limits
        self.directory = factory.directory
        self.reader = parser.CommandReader()
        self.state = _NOT_AUTH
        self.plugins: PluginSet | None = None
        self.user: User | None = None
        self.maildir: Path | None = None
        self.store: MailStore | None = None
        self.open_folders: OpenFolders | None = None
        self._bad_count = 0
        self._auth_failures = 0
        self._sasl_tag: str | None = None
        self._counted = False
        self.init_selected()

    # ------------------------------------------------------------------ connection
    @property
    def tls(self) -> bool:
        """True once the connection is encrypted."""
        return bool(self.session and self.session.tls)

    @property
    def peer_ip(self) -> str:
        """The client's IP address."""
        return self.session.peer_ip if self.session else ""

    def connection_logger(self) -> Logger:
        """The mail log."""
        return mail_log

    def session_started(self) -> None:
        """Run the connect policy, then greet."""
        self.plugins = self.factory.plugins()
        self.start_work(defer.ensureDeferred(self._greet()), "*")

    async def _greet(self) -> None:
        from mailmax.core.hooks import Scope

        assert self.plugins is not None
        verdict = await self.plugins.run_policy(
            "mailmax_connect", Scope(listener=self.listener.address), session=self.session
        )
        if verdict.decisive and verdict.action is not Action.ACCEPT:
            self.bye(one_line(verdict.text) or "Connection refused")
            return
        if self.factory.shutting_down:
            self.bye("Server shutting down")
            return
        name = self.listener.display_name or self.settings.server.hostname
        self.send(f"* OK [CAPABILITY {self.capabilities()}] {name} MailMax IMAP4rev1 ready")

    def session_ended(self) -> None:
        """Release the mailbox and the session's counts."""
        self.stop_idle()
        self.record_login()
        self.release_selected()
        self.release_open_folders()
        self.release_count()

    def release_open_folders(self) -> None:
        """Close the folders kept open between commands (in the store's threads)."""
        kept, self.open_folders = self.open_folders, None
        if kept is not None:
            closing = self.blocking(kept.close)
            closing.addErrback(lambda f: log.failure("cannot close kept folders", f))

    def dataReceived(self, data: bytes) -> None:
        """Take bytes; handle whatever can be handled now."""
        super().dataReceived(data)
        if self.reader.mid_command:  # e.g. an APPEND literal: let the client send the rest
            ack_now(self.transport)

    def take_input(self, data: bytes) -> None:
        """Frame ``data`` into commands and literals."""
        self.reader.feed(data)

    def pending_input(self) -> int:
        """Bytes the command reader holds."""
        return self.reader.pending

    def discard_input(self) -> None:
        """Forget what the command reader holds."""
        self.reader.clear()

    # ------------------------------------------------------------------ input loop
    def handle_next(self) -> bool:
        """Handle the next command, line or literal request of the reader."""
        event = self.reader.next_event()
        if event is None:
            return False
        self._handle(event)
        return True

    def _handle(self, event: parser.Event) -> None:
        if isinstance(event, parser.Command):
            self._command(event.parts)
        elif isinstance(event, parser.RawLine):
            if self._sasl_tag is not None:
                tag, self._sasl_tag = self._sasl_tag, None
                self.reader.raw = False
                self.start_work(defer.ensureDeferred(self._sasl_response(tag, event.line)), tag)
            else:
                self.idle_line(event.line)
        elif isinstance(event, parser.LiteralWanted):
            self._literal_wanted(event)
        elif isinstance(event, parser.TooLong):
            if event.what == "literals":
                self.bye("Too many literals in one command")
                return
            self._bad(event.tag, f"Command {event.what} too long")

    def command_failed(self, failure: Failure, *args: Any) -> None:
        """Answer a failed command: BAD, its NO, or NO [SERVERBUG] for the unexpected."""
        tag = args[0] if args else "*"
        if self._closing:
            return
        if failure.check(parser.ParseError):
            self._bad(tag, str(failure.value))
            return
        if failure.check(IMAPError):
            error = failure.value
            if isinstance(error, Bad):
                self._bad(tag, error.text)
            else:
                self.tagged(tag, error.status, error.text)
            return
        log.failure("internal error in session {session_id}", failure, session_id=self.session_id)
        self.tagged(tag, "NO", "[SERVERBUG] Internal error, try again later")

    def _bad(self, tag: str, text: str) -> None:
        self.emit("errors", f"{tag} BAD {text}")
        self.tagged(tag, "BAD", text)
        self._bad_count += 1
        if self._bad_count >= MAX_BAD:
            self.bye("Too many invalid commands")

    # ------------------------------------------------------------------ commands
    def _command(self, parts: list[Any]) -> None:
        try:
            tag, name, args = parser.parse_command(parts)
        except parser.ParseError as exc:
            self._discard(parts)
            tag = parser.CommandReader._tag_of(parts[0] if parts else b"")
            self._bad(tag, str(exc))
            return
        if self.factory.events.active:
            self.trace_command(command_text(tag, name, args))
        required = _STATES.get(name)
        handler: Callable[..., Any] | None = getattr(self, f"cmd_{name}", None)
        error = None
        if required is None or handler is None:
            error = "Unknown command"
        elif required == _NOT_AUTH and self.state != _NOT_AUTH:
            error = "Already authenticated"
        elif required in (_AUTH, _SELECTED) and self.state == _NOT_AUTH:
            error = "Log in first"
        elif required == _SELECTED and self.state != _SELECTED:
            error = "No mailbox selected"
        if error is not None:
            self._discard(parts)
            self._bad(tag, error)
            return
        assert handler is not None
        work = defer.ensureDeferred(self._run(tag, name, handler, args))
        work.addBoth(self._after_command, parts)
        self.start_work(work, tag)

    @staticmethod
    def _discard(parts: list[Any]) -> None:
        for part in parts:
            if isinstance(part, parser.FileLiteral):
                part.discard()

    def _after_command(self, result: object, parts: list[Any]) -> object:
        self._discard(parts)
        return result

    async def _run(self, tag: str, name: str, handler: Callable[..., Any], args: list) -> None:
        result = handler(tag, args)
        if hasattr(result, "__await__"):
            result = await result
        if result is None or self._closing:
            return
        if self.state == _SELECTED and self.selected is not None and name not in _FRESH:
            await self.send_updates(expunges=name not in ("FETCH", "STORE", "SEARCH"))
        self._bad_count = 0
        self.tagged(tag, "OK", result)

    # ------------------------------------------------------------------ output
    def send(self, line: str | bytes) -> None:
        """Write one response line (CRLF added)."""
        if self._closing:
            return
        self.write_line(line.encode("utf-8", "replace") if isinstance(line, str) else line)

    def tagged(self, tag: str, status: str, text: str) -> None:
        """The tagged completion of a command."""
        self.send(f"{tag} {status} {text}")

    def stream(self, chunks: Any) -> defer.Deferred[None]:
        """Send a long response from an iterator of byte chunks."""
        return Streamer(self.output, self.reactor, chunks).start()

    def bye(self, text: str) -> None:
        """``* BYE text``, then close."""
        if self._closing:
            return
        self.send(f"* BYE {text}")
        self.close()

    def close(self) -> None:
        """Close the connection (aborting it if it will not flush)."""
        self.hang_up()

    def capabilities(self) -> str:
        """The capability list for the current state."""
        caps = [
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "ESEARCH",
            "MOVE",
            "SPECIAL-USE",
            "CHILDREN",
            "QUOTA",
            f"APPENDLIMIT={self.settings.smtp.max_message_size}",
        ]
        if self.state == _NOT_AUTH:
            if self.factory.tls_options is not None and not self.tls:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.login_allowed else "LOGINDISABLED")
            cluster = getattr(self.factory, "cluster", None)
            if cluster is not None and cluster.settings.imap_logins == "referral":
                caps.append("LOGIN-REFERRALS")
        return " ".join(caps)

    # ------------------------------------------------------------------ timeouts
    def idle_timeout(self) -> float:
        """Seconds of silence allowed: shorter before log-in."""
        return self.limits.login_timeout if self.state == _NOT_AUTH else self.limits.idle_timeout

    def blocking(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run a blocking call (mailbox store, files) in the store's thread pool."""
        return self.factory.blocking(function, *args)

    # ------------------------------------------------------------------ any state
    def cmd_CAPABILITY(self, tag: str, args: list) -> str:
        """CAPABILITY."""
        if args:
            raise Bad("CAPABILITY takes no arguments")
        self.send(f"* CAPABILITY {self.capabilities()}")
        return "Capability completed"

    def cmd_NOOP(self, tag: str, args: list) -> str:
        """NOOP: a chance for untagged updates."""
        if args:
            raise Bad("NOOP takes no arguments")
        return "NOOP completed"

    def cmd_LOGOUT(self, tag: str, args: list) -> None:
        """LOGOUT."""
        if args:
            raise Bad("LOGOUT takes no arguments")
        self.send("* BYE MailMax logging out")
        self.tagged(tag, "OK", "Logout completed")
        mail_log.info("session {session_id} logged out", session_id=self.session_id)
        self.close()

    def cmd_ID(self, tag: str, args: list) -> str:
        """ID (RFC 2971): say who we are; the client's fields are only logged."""
        if len(args) != 1 or not (parser.is_nil(args[0]) or isinstance(args[0], list)):
            raise Bad("Syntax: ID (field value ...) or ID NIL")
        if isinstance(args[0], list):
            fields = args[0]
            if len(fields) % 2 or len(fields) > 60:
                raise Bad("ID takes at most 30 field/value pairs")
            pairs = {
                parser.astring(fields[i])[:30].decode("ascii", "replace"): (
                    None
                    if parser.is_nil(fields[i + 1])
                    else parser.astring(fields[i + 1])[:100].decode("utf-8", "replace")
                )
                for i in range(0, len(fields), 2)
            }
            log.info("session {session_id} client id {id}", session_id=self.session_id, id=pairs)
        self.send('* ID ("name" "MailMax" "vendor" "MailMax")')
        return "ID completed"

    # ------------------------------------------------------------------ literals
    def _literal_wanted(self, event: parser.LiteralWanted) -> None:
        try:
            tag, name = parser.command_head(event.parts)
        except parser.ParseError:
            tag, name = parser.CommandReader._tag_of(event.parts[0]), ""
        authenticated = self.state != _NOT_AUTH
        is_message = authenticated and name == "APPEND" and self.append_has_mailbox(event.parts)
        if is_message:
            limit = self.settings.smtp.max_message_size
        else:
            limit = SMALL_LITERAL if authenticated else PREAUTH_LITERAL
        if event.size > limit:
            code = "[TOOBIG] " if is_message else ""
            if not event.sync:
                self.bye(f"{code}Literal of {event.size} bytes is over the limit of {limit}")
                return
            self.reader.reject()
            if is_message:
                self.tagged(tag, "NO", f"{code}Message is over the size limit of {limit} bytes")
            else:
                self._bad(tag, f"Literal is over the limit of {limit} bytes")
            return
        if is_message and event.sync:
            self.start_work(defer.ensureDeferred(self._decide_append(tag, event)), tag)
            return
        self.reader.accept(self.spool_dir if is_message else None)
        if event.sync:
            self.send("+ Ready for literal data")

    async def _decide_append(self, tag: str, event: parser.LiteralWanted) -> None:
        try:
            await self.check_append(event.parts, event.size)
        except IMAPError as exc:
            self.reader.reject()
            raise exc
        except BaseException:
            self.reader.reject()
            raise
        self.reader.accept(self.spool_dir)
        self.send("+ Ready for literal data")

    @property
    def spool_dir(self) -> Path | None:
        """Where big APPEND literals are written while they arrive."""
        return self.maildir / "tmp" if self.maildir is not None else None

    def __repr__(self) -> str:
        return f"<IMAPServer {self.session_id} {self.state}>"


def command_text(tag: str, name: str, args: list[Any]) -> str:
    """An IMAP command as a trace shows it: literals as ``{N}``, secrets as ``***``."""
    return redact_command(" ".join([tag, name, *(_arg_text(arg) for arg in args)]), tagged=True)


def _arg_text(arg: Any) -> str:
    if isinstance(arg, list):
        return "(" + " ".join(_arg_text(item) for item in arg) + ")"
    if isinstance(arg, parser.FileLiteral):
        return "{literal}"
    if isinstance(arg, bytes):
        return arg[:200].decode("utf-8", "replace").replace(" ", "_") or '""'
    return str(arg)[:200].replace(" ", "_") or '""'
