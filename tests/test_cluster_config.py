"""The [cluster] configuration and the pieces of node-to-node traffic that need no server."""

from __future__ import annotations

import pytest

from mailmax.core import config
from mailmax.core.cluster.nodes import Cluster, Mailbox
from mailmax.core.cluster.proxy import referral
from mailmax.core.directory.api import Domain, DomainType, User
from mailmax.core.outbound.route import notes_parameter, parse_notes

NODES = {
    "a": {"address": "10.0.0.1", "smtp_port": 2525, "imaps_port": 993},
    "b": {"address": "10.0.0.2", "smtp_port": 2525, "imaps_port": 993, "imap_host": "b.test"},
}


def cluster(**keys) -> Cluster:
    settings = config.parse({"cluster": {"node": "a", "secret": "s" * 16, "nodes": NODES, **keys}})
    found = Cluster.from_settings(settings)
    assert found is not None
    return found


def test_a_server_without_a_node_name_is_not_in_a_cluster() -> None:
    """Q14: no [cluster] node, no cluster (every mailbox is local)."""
    assert Cluster.from_settings(config.parse({})) is None


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"node": "c", "secret": "s" * 16, "nodes": NODES}, "has no [cluster.nodes.c] table"),
        ({"node": "a", "secret": "short", "nodes": NODES}, "secret of at least 16 characters"),
        (
            {"node": "a", "secret": "s" * 16, "nodes": {"a": {"address": "x", "smtp_port": 1}}},
            "'x' is not an IP address",
        ),
    ],
)
def test_an_incomplete_cluster_section_is_refused_with_the_reason(keys, message) -> None:
    """Q14: a node that cannot work is refused when the config is read."""
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.parse({"cluster": keys})


def test_where_a_mailbox_lives() -> None:
    """Q14: the user's own home node wins over the domain's; other domains are local."""
    node = cluster()
    clustered = Domain("example.test", "mail/example.test", DomainType.CLUSTERED, home_node="a")
    normal = Domain("plain.test", "/srv/plain")
    assert node.where(User("ann", "example.test"), clustered) == (Mailbox.LOCAL, "a")
    assert node.where(User("bob", "example.test", home_node="b"), clustered) == (
        Mailbox.ELSEWHERE,
        "b",
    )
    assert node.where(User("cy", "example.test", home_node="z"), clustered)[0] == (
        Mailbox.UNKNOWN_NODE
    )
    assert node.where(User("dee", "example.test", moving=True), clustered)[0] == Mailbox.MOVING
    assert node.where(User("eve", "plain.test", home_node="b"), normal) == (Mailbox.LOCAL, "")


def test_only_a_known_node_with_the_secret_logs_in_on_the_node_listener() -> None:
    """Q14: node logins are node:NAME with the shared secret."""
    node = cluster()
    assert node.peer_name("node:b", "s" * 16) == "b"
    assert node.peer_name("node:b", "t" * 16) is None
    assert node.peer_name("node:z", "s" * 16) is None
    assert node.peer_name("bob@example.test", "s" * 16) is None


def test_the_route_to_a_home_node_is_its_listener_with_tls_and_the_secret() -> None:
    """Q14: never an MX look-up: one engine, the node's address, STARTTLS required, AUTH."""
    route = cluster().relay_route("b")
    [engine] = route.engines
    assert (engine.host, engine.port, engine.tls, engine.username) == (
        "10.0.0.2",
        2525,
        "encrypt",
        "node:a",
    )
    assert route.pass_notes and not route.transit


def test_notes_travel_as_a_valid_mail_parameter() -> None:
    """Q14: the notes survive the trip; a bad value is refused."""
    notes = {"antivirus": "infected: Eicar-Test-Signature", "x": "é ü = +"}
    text = notes_parameter(notes)
    keyword, _, value = text.strip().partition("=")
    assert keyword == "X-MAILMAX-NOTES"
    assert all(33 <= ord(ch) <= 126 and ch not in "=+" for ch in value)
    assert parse_notes(value) == notes
    assert notes_parameter({}) == ""
    with pytest.raises(ValueError, match="bad X-MAILMAX-NOTES"):
        parse_notes("not*base64")


def test_referral_urls_name_the_home_nodes_imap_server() -> None:
    """Q14: RFC 2221 referral with the login URL-encoded."""
    assert referral(cluster(), "b", "bob@example.test") == (
        "imap://bob%40example.test;AUTH=*@b.test:993/"
    )
