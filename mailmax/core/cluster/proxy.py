"""POP3 and IMAP log-ins on a node that is not the user's home: proxied there, or referred.

The password was checked here, against the shared directory. The proxy then opens a TLS
connection to the home node's POP3S or IMAPS port, logs in there as the user (``AUTH PLAIN``
with the password the client gave) and, once that succeeded, joins the two connections: every
byte either side sends goes to the other. Each side's transport is the other's producer, so
when one side stops reading the other is not read either: the proxy holds at most one socket
buffer per direction, whatever the client or the home node does.

IMAP clients that follow RFC 2221 referrals may instead be sent to the home node
(``[cluster] imap_logins = "referral"``): the log-in is answered ``NO [REFERRAL imap://...]``.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.logger import Logger

from mailmax.core.cluster.nodes import Cluster, Mailbox

log = Logger(namespace="mailmax.cluster")

#: Longest line the home node may send before the log-in completes.
MAX_LOGIN_LINE = 8192
#: Most lines the home node may send before the log-in completes.
MAX_LOGIN_LINES = 50


class ProxyError(Exception):
    """The session cannot be proxied (``temporary``: the client may try again soon)."""

    def __init__(self, text: str, *, temporary: bool = True) -> None:
        super().__init__(text)
        self.text = text
        self.temporary = temporary


async def home_elsewhere(cluster: Cluster | None, directory: Any, user: Any) -> str:
    """The node ``user`` must be served by when that is not this one, else ``""``.

    Raises :class:`ProxyError` while the mailbox is being moved or its node is unknown."""
    if cluster is None:
        return ""
    domain = await directory.get_domain(user.domain)
    state, home = cluster.where(user, domain)
    if state == Mailbox.MOVING:
        raise ProxyError("Your mailbox is being moved to another server; try again in a minute")
    if state == Mailbox.UNKNOWN_NODE:
        log.error("home node {home!r} of {user} is not in [cluster.nodes]", home=home, user=user)
        raise ProxyError("Your mailbox's server is not reachable now; try again later")
    return home if state == Mailbox.ELSEWHERE else ""


def referral(cluster: Cluster, home: str, login: str) -> str:
    """The RFC 2221 referral URL of ``login`` on node ``home``'s IMAPS port."""
    node = cluster.node(home)
    host = node.imap_host or node.address
    user = "".join(ch if ch.isalnum() or ch in "-._~@+" else f"%{ord(ch):02X}" for ch in login)
    user = user.replace("@", "%40")
    return f"imap://{user};AUTH=*@{host}:{node.imaps_port}/"


class Upstream(protocol.Protocol):
    """The proxy's connection to the home node: a short log-in dialogue, then a byte pipe."""

    def __init__(self) -> None:
        self.client: Any = None  # the client's transport, once joined
        self.lost = defer.Deferred()
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._waiting: defer.Deferred[bytes] | None = None
        self._seen = 0
        self._on_lost: Any = None

    def dataReceived(self, data: bytes) -> None:
        """Before joining: collect lines for the dialogue; after: pass to the client."""
        if self.client is not None:
            self.client.write(data)
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            self._seen += 1
            self._lines.append(line.rstrip(b"\r"))
        if len(self._buffer) > MAX_LOGIN_LINE or self._seen > MAX_LOGIN_LINES:
            self.transport.abortConnection()
            return
        self._deliver()

    def _deliver(self) -> None:
        if self._waiting is not None and self._lines:
            waiting, self._waiting = self._waiting, None
            waiting.callback(self._lines.pop(0))

    def read_line(self) -> defer.Deferred[bytes]:
        """The next line from the home node (fails when the connection ends first)."""
        if self.lost.called:
            return defer.fail(ProxyError("The mailbox server closed the connection"))
        self._waiting = defer.Deferred()
        waiting = self._waiting
        self._deliver()
        return waiting

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        """Fail a pending read; after joining, close the client's connection too."""
        if not self.lost.called:
            self.lost.callback(None)
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(ProxyError("The mailbox server closed the connection"))
        if self._on_lost is not None:
            self._on_lost()

    def join(self, connection: Any) -> None:
        """Join this connection with the client's session ``connection`` (see module doc)."""
        client = connection.transport
        self.client = client
        pipelined = connection.relay(self.transport)  # sent behind the log-in: for the home node
        client.registerProducer(self.transport, True)
        self.transport.registerProducer(client, True)
        self._on_lost = connection.hang_up
        if pipelined:
            self.transport.write(pipelined)
        rest = b"".join(line + b"\r\n" for line in self._lines) + bytes(self._buffer)
        self._lines.clear()
        self._buffer.clear()
        if rest:
            client.write(rest)


async def connect(cluster: Cluster, home: str, service: str, reactor: Any) -> Upstream:
    """A TLS connection to ``home``'s POP3S or IMAPS port (``service``: pop3 or imap)."""
    node = cluster.node(home)
    port = node.pop3s_port if service == "pop3" else node.imaps_port
    if not port:
        raise ProxyError(
            f"Your mailbox is on server {home}, which has no {service.upper()} port for this"
            " server to reach it; ask your administrator",
            temporary=False,
        )
    timeout = cluster.settings.proxy_connect_timeout
    tcp = endpoints.TCP4ClientEndpoint(reactor, node.address, port, timeout=timeout)
    endpoint = endpoints.wrapClientTLS(cluster.client_tls(home), tcp)
    try:
        upstream = await endpoints.connectProtocol(endpoint, Upstream())
    except Exception as exc:
        log.warn("cannot reach node {home} for a proxied log-in: {error}", home=home, error=exc)
        raise ProxyError("Your mailbox's server is not reachable now; try again later") from None
    return upstream


async def _dialogue(upstream: Upstream, service: str, login: str, password: str) -> None:
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    greeting = await upstream.read_line()
    if service == "pop3":
        if not greeting.startswith(b"+OK"):
            raise ProxyError("The mailbox server is not ready; try again later")
        upstream.transport.write(f"AUTH PLAIN {token}\r\n".encode())
        answer = await upstream.read_line()
        if not answer.startswith(b"+OK"):
            raise ProxyError(
                f"The mailbox server refused the log-in: {answer[:200].decode(errors='replace')}"
            )
        return
    if not greeting.startswith(b"* OK"):
        raise ProxyError("The mailbox server is not ready; try again later")
    upstream.transport.write(f"px1 AUTHENTICATE PLAIN {token}\r\n".encode())
    while True:
        answer = await upstream.read_line()
        if answer.startswith(b"px1 "):
            break
    if not answer.startswith(b"px1 OK"):
        raise ProxyError(
            f"The mailbox server refused the log-in: {answer[3:200].decode(errors='replace')}"
        )


async def open_home(
    cluster: Cluster, home: str, service: str, login: str, password: str, reactor: Any
) -> Upstream:
    """Connect to ``home`` and log in there as ``login``; the upstream ready to be joined."""
    upstream = await connect(cluster, home, service, reactor)
    work = defer.ensureDeferred(_dialogue(upstream, service, login, password))
    work.addTimeout(cluster.settings.proxy_connect_timeout, reactor)
    try:
        await work
    except defer.TimeoutError:
        upstream.transport.abortConnection()
        raise ProxyError("The mailbox server did not answer in time; try again later") from None
    except BaseException:
        upstream.transport.abortConnection()
        raise
    return upstream
