"""This node's view of its cluster: its name, where the other nodes are, whose mailbox is where."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from twisted.internet import ssl

from mailmax.core.config import ClusterNodeSettings, ClusterSettings, Settings
from mailmax.core.directory.api import Domain, DomainType, Lookup, User
from mailmax.core.outbound.route import Engine, Route

#: The SMTP AUTH login a node uses on its peers' node-to-node listeners: ``node:NAME``.
PEER_LOGIN_PREFIX = "node:"
#: The domain of the pseudo-user a peer logs in as (shows in Received headers and logs).
PEER_DOMAIN = "cluster.invalid"


class Mailbox:
    """Where one mailbox lives, as far as this node is concerned."""

    LOCAL = "local"  # here (or the domain is not clustered)
    ELSEWHERE = "elsewhere"  # on another node: relay or proxy there
    MOVING = "moving"  # being moved between nodes: wait
    UNKNOWN_NODE = "unknown_node"  # its home node is not in [cluster.nodes]: wait, log why


class Cluster:
    """What a node knows of its cluster (built from ``[cluster]``)."""

    def __init__(self, settings: ClusterSettings, base: Settings | None = None) -> None:
        self.settings = settings
        self.name = settings.node
        self._base = base

    @classmethod
    def from_settings(cls, settings: Settings) -> Cluster | None:
        """The cluster of ``settings``, or None when this server is not a node of one."""
        return cls(settings.cluster, settings) if settings.cluster.enabled else None

    # ------------------------------------------------------------------ homes
    @staticmethod
    def home_of(user: User, domain: Domain | None) -> str:
        """The user's home node; ``""`` outside clustered domains (every mailbox is local)."""
        if domain is None or domain.type is not DomainType.CLUSTERED:
            return ""
        return user.home_node or domain.home_node

    def where(self, user: User, domain: Domain | None) -> tuple[str, str]:
        """(:class:`Mailbox` state, home node name) of ``user``'s mailbox."""
        home = self.home_of(user, domain)
        if user.moving:
            return Mailbox.MOVING, home
        if not home or home == self.name:
            return Mailbox.LOCAL, home
        if home not in self.settings.nodes:
            return Mailbox.UNKNOWN_NODE, home
        return Mailbox.ELSEWHERE, home

    def node(self, name: str) -> ClusterNodeSettings:
        """The settings of node ``name`` (KeyError when it is not configured)."""
        return self.settings.nodes[name]

    # ------------------------------------------------------------------ node-to-node SMTP
    def relay_route(self, home: str) -> Route:
        """The route of mail for a mailbox on ``home``: its node-to-node listener, STARTTLS
        required, logged in with the shared secret; never an MX look-up."""
        node = self.node(home)
        engine = Engine(
            name=f"node {home}",
            host=node.address,
            port=node.smtp_port,
            tls="encrypt",
            username=PEER_LOGIN_PREFIX + self.name,
            password=self.settings.secret,
        )
        return Route(engines=(engine,), name=f"cluster node {home}", pass_notes=True)

    def peer_name(self, login: str, password: str) -> str | None:
        """The node a node-to-node login proves, or None."""
        if not login.startswith(PEER_LOGIN_PREFIX):
            return None
        name = login[len(PEER_LOGIN_PREFIX) :]
        secret = self.settings.secret.encode()
        if name not in self.settings.nodes or not hmac.compare_digest(password.encode(), secret):
            return None
        return name

    def peer_user(self, name: str) -> User:
        """The pseudo-user a peer node's SMTP session is authenticated as."""
        return User(name=f"node-{name}", domain=PEER_DOMAIN)

    def path(self, value: str) -> Path:
        """``value`` resolved against the data directory."""
        return self._base.path(value) if self._base is not None else Path(value)

    # ------------------------------------------------------------------ TLS to peers
    def client_tls(self, home: str) -> Any:
        """TLS options for connecting to node ``home`` (checked against ``tls_ca_file`` when
        one is configured, for the name the node is reached by)."""
        ca_file = self.settings.tls_ca_file
        if not ca_file:
            return ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
        data = self.path(ca_file).read_bytes()
        marker = b"-----END CERTIFICATE-----"
        blocks = [part + marker for part in data.split(marker) if b"BEGIN CERTIFICATE" in part]
        root = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
        node = self.node(home)
        return ssl.optionsForClientTLS(node.imap_host or node.address, trustRoot=root)


def route_for_lookup(cluster: Cluster, found: Any) -> Route | str | None:
    """For a recipient sent on as ``relay``: the route to its home node, a temporary-failure
    reply while it cannot be sent (moving, unknown node), or None (not a clustered mailbox)."""
    if found.status not in (Lookup.USER, Lookup.CATCH_ALL) or found.user is None:
        return None
    state, home = cluster.where(found.user, found.domain)
    if state == Mailbox.MOVING:
        return f"451 4.2.1 <{found.user.address}>: mailbox is being moved between nodes"
    if state == Mailbox.UNKNOWN_NODE:
        return f"451 4.3.5 Home node {home!r} of <{found.user.address}> is not in [cluster.nodes]"
    if not home:
        return None
    return cluster.relay_route(home)
