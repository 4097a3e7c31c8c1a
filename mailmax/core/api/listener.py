"""The admin API's HTTPS listener: a twisted.web site on ``[admin] address``:``port`` with
the server's certificate, request bodies bounded by ``[admin] max_body_bytes``, idle
connections closed after a minute and at most :data:`MAX_CONNECTIONS` open at once (more are
closed as they come)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.protocols import policies
from twisted.web import server
from zope.interface import implementer

from mailmax.core.config import ConfigError, Settings
from mailmax.core.tls import ReloadableServerOptions, server_options

#: Seconds an idle HTTP connection is kept.
IDLE_TIMEOUT = 60
#: Connections open at once (streams included).
MAX_CONNECTIONS = 200


class BoundedRequest(server.Request):
    """A request whose body may not exceed the site's ``max_body`` bytes: a bigger one is
    answered 413 and the connection closed, without keeping what was sent."""

    _received = 0
    _refused = False

    def _refuse(self) -> None:
        self._refused = True
        body = b'{"error": {"status": 413, "message": "the request body is too large"}}'
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.channel.transport.loseConnection()

    def gotLength(self, length: int | None) -> None:
        """Refuse a declared body over the limit before reading it."""
        if length is not None and length > self.channel.site.max_body:
            self._refuse()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count the body as it comes (chunked bodies have no declared length)."""
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Serve the request, unless its body was refused."""
        if not self._refused:
            super().requestReceived(command, path, version)


@implementer(IProtocolNegotiationFactory)
class LimitedFactory(policies.WrappingFactory):
    """``site`` with at most :data:`MAX_CONNECTIONS` connections open at once."""

    noisy = False

    def acceptableProtocols(self) -> list[bytes]:
        """The site's protocols for TLS negotiation (ALPN): browsers and curl offer it, and a
        handshake offering it fails unless the factory answers."""
        return self.wrappedFactory.acceptableProtocols()

    def buildProtocol(self, addr: Any) -> Any:
        """A connection, or None (it is closed) when too many are open."""
        if len(self.protocols) >= MAX_CONNECTIONS:
            return None
        return super().buildProtocol(addr)


class AdminSite(server.Site):
    """The API's site: bounded requests, no server version in answers."""

    requestFactory = BoundedRequest
    displayTracebacks = False

    def __init__(self, resource: Any, max_body: int) -> None:
        super().__init__(resource, timeout=IDLE_TIMEOUT)
        self.max_body = max_body
        self.noisy = False


def tls_options(settings: Settings) -> ReloadableServerOptions:
    """The server certificate for the API; ConfigError when there is none."""
    cert, key = settings.path(settings.tls.cert), settings.path(settings.tls.key)
    if not (cert.exists() and key.exists()):
        raise ConfigError(
            f"{settings.source}: [admin] enabled needs the server certificate; {cert} or {key} "
            "is missing (set [tls] cert/key, or disable [admin])"
        )
    return ReloadableServerOptions(server_options(cert, key, settings.tls.min_version))


def listen(reactor: Any, settings: Settings, site: AdminSite, tls: Any) -> defer.Deferred:
    """Listen for the API on ``[admin] address``:``port`` with ``tls``."""
    endpoint = endpoints.SSL4ServerEndpoint(
        reactor, settings.admin.port, tls, interface=settings.admin.address
    )
    return endpoint.listen(LimitedFactory(site))
