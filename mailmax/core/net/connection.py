"""The connection base of the SMTP, POP3 and IMAP servers.

A :class:`Connection` handles one command at a time: bytes go into a bounded input buffer and
the next command is taken only when the previous one has answered (directory look-ups, plugins
and the mailbox store are asynchronous), so replies to pipelined commands come in order.

It owns, for every protocol:

- **input flow control**: reading pauses while too much input waits, and a client that sends
  far more than that (ignoring flow control) is disconnected;
- **backpressure on replies**: the connection is its transport's streaming producer, so when
  the client does not read and the transport's send buffer fills up, no further command is
  taken (no reply is made) until the buffer drains, and a client that leaves it full for
  ``[connections] send_timeout`` seconds is dropped;
- **line splitting** with a maximum line length (:meth:`Connection.next_line`);
- **TLS upgrade** (:meth:`Connection.start_tls`), idle timeouts on the reactor's clock, closing
  (with a final line, aborting a connection that will not flush) and graceful shutdown;
- **session bookkeeping**: the :class:`~mailmax.core.model.Session`, the factory's session set
  and its per-IP admission.

A protocol subclass says how it greets, takes its next command and words its final lines
(:attr:`Connection.farewells`).
"""

from __future__ import annotations

import abc
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailmax.core.clientrights import PERMITTED, ClientRights
from mailmax.core.model import Session
from mailmax.core.observe.events import Event
from mailmax.core.sendnow import write_now

if TYPE_CHECKING:
    from mailmax.core.net.factory import ListenerFactory

log = Logger(namespace="mailmax.net")

#: Unprocessed input above this many bytes pauses reading from the client (by default).
PAUSE_INPUT = 64 * 1024
#: Unprocessed input above this many bytes (a client ignoring flow control) closes the session.
MAX_INPUT = 1024 * 1024
#: Seconds a closing connection gets to flush before it is aborted.
ABORT_AFTER = 5.0
#: First words of an HTTP request: a browser or proxy probe, not a mail client.
HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"})


@implementer(interfaces.IPushProducer)
class Connection(protocol.Protocol, metaclass=abc.ABCMeta):
    """One client connection; subclasses implement the protocol on top.

    Subclasses implement :meth:`session_started` (greet), :meth:`handle_next` (take and start
    the next command) and :meth:`idle_timeout`, and set :attr:`farewells`.
    """

    factory: ListenerFactory
    #: The final line for each reason the server closes a connection by itself: ``input``
    #: (too much unprocessed input), ``timeout``, ``shutdown``, ``limit`` (per-IP limits;
    #: ``{reason}`` is replaced by the limit's text) and ``banned`` (the client's rights
    #: refuse it; ``{reason}`` says why). ``{host}`` is the server's name.
    farewells: ClassVar[dict[str, str]] = {}
    #: Unprocessed input above this many bytes pauses reading.
    pause_input: ClassVar[int] = PAUSE_INPUT
    #: Unprocessed input above this many bytes closes the session; 0 = never.
    max_input: ClassVar[int] = MAX_INPUT
    #: Send small replies at once (no Nagle delay).
    no_delay: ClassVar[bool] = False

    def __init__(self, factory: ListenerFactory) -> None:
        self.factory = factory
        self.reactor = factory.reactor
        self.listener = factory.listener
        self.session: Session | None = None
        #: The client's rights, asked when it connected.
        self.rights: ClientRights = PERMITTED
        self._inbox = bytearray()
        self._busy = False
        self._running = False
        self._paused = False
        self._discarding = False
        self._closing = False
        self._shutdown_pending = False
        self._admitted = False
        self._send_blocked = False
        self._stream: Any = None
        self._timer: Any = None
        self._abort_call: Any = None
        self._stall_call: Any = None
        #: While the session is relayed to another server (a cluster's home node): the
        #: transport the client's bytes go to (see :mod:`mailmax.core.cluster.proxy`).
        self.relay_to: Any = None
        #: What a long response (a message being sent) writes to and registers its producer
        #: with: the transport, under this connection's backpressure.
        self.output = _Output(self)

    # ------------------------------------------------------------------ connection
    def connectionMade(self) -> None:
        """Build the session, admit it under the per-IP limits, then let the protocol greet."""
        peer, host = self.transport.getPeer(), self.transport.getHost()
        session = self.session = Session(
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
        rights = self.rights = self.factory.client_rights(session)
        rights.apply(session)
        refusal = self.factory.admit(session.peer_ip, rights.limits_exempt)
        if refusal is not None:
            log.info(
                "connection from {peer} on {listener} ({service}) refused: {reason}",
                peer=session.peer_ip,
                listener=f"{self.listener.address}:{session.local_port}",
                service=self.listener.service,
                reason=refusal,
            )
            self.emit("connections", f"connection from {session.peer_ip} refused: {refusal}")
            self.say_goodbye("limit", reason=refusal)
            return
        self._admitted = True
        self.factory.activity.add(self.listener.service, "connections")
        self.transport.registerProducer(self, True)
        if self.no_delay:
            set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
            if set_no_delay is not None:
                set_no_delay(True)
        self.connection_logger().info(
            "connection {session_id} from {peer} on {listener} ({service})",
            session_id=session.session_id,
            peer=f"{session.peer_ip}:{session.peer_port}",
            listener=f"{self.listener.address}:{session.local_port}",
            service=self.listener.service,
        )
        self.emit(
            "connections",
            f"connection from {session.peer_ip}:{session.peer_port}"
            f" on {self.listener.address}:{session.local_port}",
        )
        self.touch()
        if rights.banned:
            log.info(
                "connection {session_id} from {peer} refused: banned ({rule})",
                session_id=session.session_id,
                peer=session.peer_ip,
                rule=rights.rule,
            )
            self.client_banned(rights)
            return
        self.session_started()

    def client_banned(self, rights: ClientRights) -> None:
        """The client's rights refuse it: by default, the ``banned`` farewell."""
        self.say_goodbye("banned", reason=rights.refusal)

    def connection_logger(self) -> Logger:
        """Where the connection line of every session goes."""
        return log

    @abc.abstractmethod
    def session_started(self) -> None:
        """The connection is admitted: greet (or start what greets)."""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Forget the session: timers, input, its place in the factory and the IP's count."""
        self._closing = True
        relay, self.relay_to = self.relay_to, None
        if relay is not None:
            relay.loseConnection()
        self.discard_input()
        for call in (self._timer, self._abort_call, self._stall_call):
            if call is not None and call.active():
                call.cancel()
        self._stream = None
        self.session_ended()
        if self._admitted:
            self.emit("connections", "connection closed")
            self._admitted = False
            self.factory.release(self.session.peer_ip if self.session else "")
        self.factory.session_gone(self)

    def session_ended(self) -> None:
        """The connection is gone: release what the session holds."""

    # ------------------------------------------------------------------ events
    def emit(self, category: str, text: str, user: str = "") -> None:
        """Publish an event of this session (built only when somebody listens)."""
        bus = self.factory.events
        service = self.listener.service
        if not bus.wants(service, category) or self.session is None:
            return
        session = self.session
        user = user or session.auth_user or ""
        bus.publish(
            Event(
                bus.clock(),
                service,
                category,
                text,
                session=session.session_id,
                ip=session.peer_ip,
                user=user,
                domains=self.event_domains(user),
            )
        )

    def event_domains(self, user: str) -> tuple[str, ...]:
        """The domains this session's events concern (the user's; protocols add more)."""
        domain = user.rpartition("@")[2].lower()
        return (domain,) if domain else ()

    def trace_command(self, text: str) -> None:
        """Publish a command the client sent (``text`` without secrets: see
        :func:`mailmax.core.observe.redact.redact_command`)."""
        if self.factory.events.active:
            self.emit("commands", text)
            self.emit("conversation", f"C: {text}")

    def trace_reply(self, data: bytes) -> None:
        """Publish a reply sent to the client (category ``conversation``)."""
        if self.factory.events.active:
            text = data.decode("utf-8", "replace").replace("\r\n", "\n")
            self.emit("conversation", f"S: {text}")

    def note_login(self, login: str, outcome: str) -> None:
        """A log-in attempt ended with ``outcome`` (``ok``, ``failed``, ``blocked``...):
        publish it (category ``logins``) and count the failures."""
        if outcome == "failed":
            self.factory.activity.add(self.listener.service, "failed_logins")
        self.emit("logins", f"login {login} {outcome}", user=login)

    @property
    def session_id(self) -> str:
        """This session's id in logs."""
        return self.session.session_id if self.session else "-"

    # ------------------------------------------------------------------ input
    def dataReceived(self, data: bytes) -> None:
        """Take ``data``; handle whatever can be handled now."""
        if self.relay_to is not None:
            self.relay_to.write(data)
            return
        if self._closing:
            return
        self.touch()
        self.take_input(data)
        if not self._running:
            self.process()

    def take_input(self, data: bytes) -> None:
        """Keep received bytes until they are handled."""
        self._inbox += data

    def pending_input(self) -> int:
        """Bytes received and not handled yet."""
        return len(self._inbox)

    def discard_input(self) -> None:
        """Forget every byte received and not handled (closing, or TLS starting)."""
        self._inbox.clear()

    def process(self) -> None:
        """Handle commands while no command runs and the client reads its replies."""
        if self._running:
            return
        self._running = True
        try:
            while not self._busy and not self._closing and not self._send_blocked:
                if not self.handle_next():
                    break
        finally:
            self._running = False
        self.flow_control()

    @abc.abstractmethod
    def handle_next(self) -> bool:
        """Take the next command (or piece of input) and start it; False when none is complete."""

    def flow_control(self) -> None:
        """Pause reading while too much input waits; close when a client ignores that."""
        if self._closing:
            return
        size = self.pending_input()
        if self.max_input and size > self.max_input:
            self.say_goodbye("input")
        elif size > self.pause_input and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and size <= self.pause_input // 2:
            self._paused = False
            self.transport.resumeProducing()

    def next_line(self, limit: int) -> bytes | None:
        """The next line of input without its line end, or None until one is complete.

        A line longer than ``limit`` bytes is dropped (up to its end, however long) and
        reported with :meth:`line_too_long`.
        """
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
                    self.line_too_long()
                return None
            line = bytes(inbox[:newline])
            del inbox[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self.line_too_long()
                continue
            return line
        return None

    def line_too_long(self) -> None:
        """A command line over the limit was dropped (:meth:`next_line`): tell the client.

        A protocol that reads lines with :meth:`next_line` answers in its own words; without
        that, the connection is closed."""
        self.hang_up()

    # ------------------------------------------------------------------ running commands
    def start_work(self, work: defer.Deferred[Any] | None, *failure_args: Any) -> None:
        """Run ``work`` as the current command: input waits until it is done.

        A failure goes to :meth:`command_failed` with ``failure_args``.
        """
        if work is None:
            return
        self._busy = True
        work.addErrback(self.command_failed, *failure_args)
        work.addBoth(self._resume)

    @abc.abstractmethod
    def command_failed(self, failure: Failure, *args: Any) -> None:
        """A command failed unexpectedly: answer it."""

    def _resume(self, _: object) -> None:
        self._busy = False
        if self._closing or self.shutdown_if_due():
            return
        self.process()

    def shutdown_if_due(self) -> bool:
        """After a command: say goodbye when a shutdown waits and no transaction is open
        (not while closing already); True when it did."""
        if self._closing or not self._shutdown_pending or self.in_transaction:
            return False
        self.say_goodbye("shutdown")
        return True

    @property
    def in_transaction(self) -> bool:
        """True while the session must not be closed by a graceful shutdown."""
        return False

    # ------------------------------------------------------------------ output
    def write_line(self, data: bytes) -> None:
        """Send one line (CRLF added), unless the connection is closing."""
        if not self._closing:
            if self.factory.events.active:
                self.trace_reply(data)
            write_now(self.transport, data + b"\r\n")

    def relay(self, to: Any) -> bytes:
        """From now on pass every byte the client sends to the transport ``to`` and handle
        none here (the session goes on elsewhere: a cluster's home node). The inactivity timer
        stops and the transport's producer is released (the caller registers its own). Returns
        what was received and not handled yet."""
        self.relay_to = to
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.transport.unregisterProducer()
        pending = bytes(self._inbox)
        self._inbox.clear()
        return pending

    def start_tls(self) -> None:
        """Switch to TLS now; input that came before (pipelined in clear text) is dropped."""
        self.discard_input()
        self._discarding = False
        self.transport.startTLS(self.factory.tls_options)
        if self.session is not None:
            self.session.tls = True

    # IPushProducer: the transport's send buffer is full (the client is not reading) or not.
    def pauseProducing(self) -> None:
        """The client is not reading: make no more replies; drop it if that lasts."""
        if self._send_blocked or self._closing:
            return
        self._send_blocked = True
        if self._stream is not None:
            self._stream.pauseProducing()
        self._stall_call = self.reactor.callLater(self.factory.send_timeout, self._stalled)

    def resumeProducing(self) -> None:
        """The client reads again: go on."""
        if not self._send_blocked:
            return
        self._send_blocked = False
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None
        if self._stream is not None:
            self._stream.resumeProducing()
        if not self._busy and not self._closing:
            self.process()

    def stopProducing(self) -> None:
        """The connection is going away."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stopProducing()

    @property
    def send_blocked(self) -> bool:
        """True while the transport's send buffer is full."""
        return self._send_blocked

    def _stalled(self) -> None:
        self._stall_call = None
        log.info(
            "session {session_id} dropped: replies unread for {seconds}s",
            session_id=self.session_id,
            seconds=self.factory.send_timeout,
        )
        self._closing = True
        self.discard_input()
        self.abort()

    # ------------------------------------------------------------------ closing
    def say_goodbye(self, why: str, **values: str) -> None:
        """Close with the protocol's final line for ``why`` (see :attr:`farewells`)."""
        host = self.listener.display_name or self.factory.settings.server.hostname
        self.hang_up(self.farewells[why].format(host=host, **values))

    def hang_up(self, final: str | None = None) -> None:
        """Optionally send a final line, then close (aborting a connection that will not flush)."""
        if self._closing:
            return
        if final is not None:
            self.write_line(final.encode("utf-8", "replace"))
        self._closing = True
        self.discard_input()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._admitted:  # a registered producer would keep the connection open
            self.transport.unregisterProducer()
        self._stream = None
        self.transport.loseConnection()
        self._abort_call = self.reactor.callLater(ABORT_AFTER, self.abort)

    def abort(self) -> None:
        """Close at once, dropping what is not sent."""
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    # ------------------------------------------------------------------ timeouts, shutdown
    @abc.abstractmethod
    def idle_timeout(self) -> float:
        """Seconds the client may stay silent now."""

    def touch(self) -> None:
        """Restart the inactivity timer."""
        if self._closing:
            return
        seconds = self.idle_timeout()
        if self._timer is not None and self._timer.active():
            self._timer.reset(seconds)
        else:
            self._timer = self.reactor.callLater(seconds, self._timed_out)

    def _timed_out(self) -> None:
        if self._busy:  # waiting for us, not for the client
            self._timer = self.reactor.callLater(self.idle_timeout(), self._timed_out)
            return
        log.info("session {session_id} timed out", session_id=self.session_id)
        self.say_goodbye("timeout")

    def shutdown(self) -> None:
        """The server stops: close now when idle, else after the command or transaction."""
        if self._busy or self.in_transaction:
            self._shutdown_pending = True
        else:
            self.say_goodbye("shutdown")

    def force_close(self) -> None:
        """The grace period is over: say so and close, whatever is going on."""
        self.say_goodbye("shutdown")


class _Output:
    """The transport as a long response sees it: writes go to the transport, and its producer
    is paused and resumed with the connection's backpressure."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def write(self, data: bytes) -> None:
        """Write to the transport."""
        self._connection.transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Pause and resume ``producer`` (a push producer) with the client's reading."""
        connection = self._connection
        if connection._closing:
            producer.stopProducing()
            return
        connection._stream = producer
        if connection._send_blocked:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """The long response is over."""
        self._connection._stream = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection.transport, name)
