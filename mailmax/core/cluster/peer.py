"""The node-to-node SMTP listener: where the other nodes hand over mail for mailboxes homed here.

It listens on this node's ``[cluster.nodes.NAME]`` address and ``smtp_port``. A peer must
start TLS and log in with ``AUTH PLAIN`` as ``node:ITS-NAME`` with the shared secret before
MAIL; nobody else can log in there. Policy ran on the node that received the message, so no
plugin runs on this listener (no second virus scan, no DNSBL look-up of a peer's address);
the message is spooled and delivered here like any other.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger

from mailmax.core.cluster.nodes import Cluster
from mailmax.core.config import ListenerSettings, Settings
from mailmax.core.directory.api import User
from mailmax.core.hooks import PluginSet
from mailmax.core.model import kept_notes
from mailmax.core.outbound.route import NOTES_PARAMETER, parse_notes
from mailmax.core.smtp.commands import SMTPReplyError
from mailmax.core.smtp.factory import SMTPFactory
from mailmax.core.smtp.server import SMTPServer

log = Logger(namespace="mailmax.cluster")

#: Longest command line on the node-to-node listener (the MAIL command carries the notes).
PEER_COMMAND_LINE = 65536


class PeerDirectory:
    """The directory as the node-to-node listener sees it: only peer nodes can log in."""

    def __init__(self, directory: Any, cluster: Cluster) -> None:
        self._directory = directory
        self._cluster = cluster

    def authenticate(self, login: str, password: str, domain: str = "") -> defer.Deferred[Any]:
        """The peer pseudo-user for a node's login with the shared secret; None otherwise."""
        name = self._cluster.peer_name(login, password)
        return defer.succeed(self._cluster.peer_user(name) if name else None)

    def clear_password(
        self, login: str, domain: str = ""
    ) -> defer.Deferred[tuple[User, str] | None]:
        """No challenge-response logins here."""
        return defer.succeed(None)

    def record_login(self, address: str, service: str, ip: str) -> None:
        """Peer logins are not users' logins: nothing to record."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._directory, name)


def peer_settings(settings: Settings) -> Settings:
    """``settings`` with the node-to-node listener's rules: AUTH required (after TLS) for MAIL,
    no trusted networks, room for the notes in the MAIL command."""
    smtp = settings.smtp.model_copy(
        update={
            "require_auth_on": ["smtp"],
            "allow_plaintext_auth": False,
            "trusted_networks": [],
            "max_command_line": PEER_COMMAND_LINE,
        }
    )
    return settings.model_copy(update={"smtp": smtp})


class PeerSMTPServer(SMTPServer):
    """An SMTP session of a peer node: the notes plugins attached to the message on the node
    that received it (``X-MAILMAX-NOTES`` on MAIL, from logged-in peers only) are kept with it,
    so delivery here acts on the checks made there."""

    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL FROM with the peer's notes taken out of the parameters."""
        words = arg.split(" ")
        prefix = NOTES_PARAMETER + "="
        given = [w for w in words if w.upper().startswith(prefix)]
        notes: dict[str, str] = {}
        if given:
            if self.session is None or self.session.auth_user is None:
                raise SMTPReplyError(530, "5.7.0", "Authentication required")
            try:
                notes = parse_notes(given[-1][len(prefix) :])
            except ValueError as exc:
                raise SMTPReplyError(501, "5.5.4", str(exc)) from None
            arg = " ".join(w for w in words if w not in given)
        await super().smtp_MAIL(arg)
        if notes and self.envelope is not None:
            self.envelope.notes.update(kept_notes(notes))


class PeerSMTPFactory(SMTPFactory):
    """Builds :class:`PeerSMTPServer` sessions."""

    protocol = PeerSMTPServer  # type: ignore[assignment]


class PeerListener(service.Service):
    """Runs the node-to-node SMTP listener of a MailMax node."""

    def __init__(self, mailmax: Any, cluster: Cluster) -> None:
        self.mailmax = mailmax
        self.cluster = cluster
        self.factory: SMTPFactory | None = None
        self.port: Any = None
        self._no_plugins = PluginSet([])

    def startService(self) -> None:
        """Listen on this node's internal address (the server stops when that fails)."""
        super().startService()
        mailmax = self.mailmax
        node = self.cluster.node(self.cluster.name)
        listener = ListenerSettings(service="smtp", address=node.address, port=node.smtp_port)
        tls = mailmax.peer_tls_options()
        if tls is None:
            log.critical(
                "node {node}: the node-to-node listener needs the [tls] certificate and key (TLS"
                " is required between nodes); stopping",
                node=self.cluster.name,
            )
            mailmax.reactor.callLater(0, mailmax.reactor.stop)
            return
        self.factory = PeerSMTPFactory(
            spool=mailmax.spool,
            settings=peer_settings(mailmax.settings),
            listener=listener,
            directory=PeerDirectory(mailmax.async_directory, self.cluster),
            plugins=lambda: self._no_plugins,
            tls_options=tls,
            reactor=mailmax.reactor,
            authlimit=mailmax.authlimit,
            logins=mailmax.logins,
            limiter=mailmax.limiter,
        )
        endpoint = endpoints.TCP4ServerEndpoint(
            mailmax.reactor, node.smtp_port, interface=node.address
        )
        d = endpoint.listen(self.factory)
        d.addCallback(self._listening)
        d.addErrback(self._failed)

    def _listening(self, port: Any) -> None:
        self.port = port
        log.info(
            "node {node}: node-to-node SMTP on {address}:{port}",
            node=self.cluster.name,
            address=port.getHost().host,
            port=port.getHost().port,
        )

    def _failed(self, failure: Any) -> None:
        log.critical(
            "node {node}: cannot listen for peers: {error}; stopping",
            node=self.cluster.name,
            error=failure.getErrorMessage(),
        )
        self.mailmax.reactor.callLater(0, self.mailmax.reactor.stop)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Stop listening; let transactions in flight finish within the grace period."""
        super().stopService()
        if self.port is not None:
            yield defer.maybeDeferred(self.port.stopListening)
        if self.factory is not None:
            yield self.factory.shutdown(self.mailmax.settings.server.shutdown_grace_seconds)
