"""Clustered domains: mail for a user homed on another node goes there, over the node-to-node
SMTP listener (TLS, shared secret), and lands only in the home node's Maildir."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.cluster_support import ADDRESSES, SECRET, Node, cluster_nodes, seed
from tests.fixtures.postgres import new_database


@pytest.fixture(scope="module")
def nodes(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """Nodes a and b running on one shared PostgreSQL directory."""
    base = tmp_path_factory.mktemp("cluster")
    with new_database(postgres) as url:
        seed(url, base)
        found = cluster_nodes(base, url)
        try:
            for node in found.values():
                node.start()
            yield found
        finally:
            for node in found.values():
                try:
                    node.stop(timeout=15)
                except Exception:
                    node.kill()


def send(node: Node, recipient: str, subject: str) -> None:
    """Send a message to ``recipient`` through ``node``'s public SMTP listener."""
    message = EmailMessage()
    message["From"] = "sender@elsewhere.test"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(f"{subject}\n")
    with smtplib.SMTP(node.address, node.ports["smtp"], timeout=10) as client:
        client.send_message(message)


def test_mail_for_a_user_homed_on_b_sent_to_a_lands_in_bs_maildir(nodes) -> None:
    """C1: a accepts mail for bob (home b), relays it to b, b stores it; a keeps no copy."""
    a, b = nodes["a"], nodes["b"]
    send(a, "bob@example.test", "via a")
    [stored] = b.wait_for_mail("bob@example.test")
    assert b"Subject: via a" in stored
    assert a.messages("bob@example.test") == []
    assert b"with ESMTPSA" in stored  # b took it over TLS from an authenticated peer


def test_mail_for_a_user_homed_on_a_sent_to_b_lands_in_as_maildir(nodes) -> None:
    """C1: the domain's home node is the home of users without their own (alice: a)."""
    a, b = nodes["a"], nodes["b"]
    send(b, "alice@example.test", "via b")
    [stored] = a.wait_for_mail("alice@example.test")
    assert b"Subject: via b" in stored
    assert b.messages("alice@example.test") == []


def test_the_node_listener_refuses_mail_without_the_node_login(nodes) -> None:
    """C1: the node-to-node listener wants TLS and a node's login with the shared secret."""
    b = nodes["b"]
    port = _peer_port(b)
    with smtplib.SMTP(ADDRESSES["b"], port, timeout=10) as client:
        client.ehlo("test")
        code, _ = client.mail("x@elsewhere.test")
        assert code == 530
        client.starttls(context=_insecure())
        client.ehlo("test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("node:a", "wrong-secret-wrong-secret")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bob@example.test", "bobsecret")
        client.login("node:a", SECRET)
        assert client.mail("x@elsewhere.test")[0] == 250


def _peer_port(node: Node) -> int:
    text = node.config_path.read_text()
    section = text.split(f"[cluster.nodes.{node.name}]")[1]
    line = next(item for item in section.splitlines() if item.startswith("smtp_port"))
    return int(line.split("=")[1])


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_each_node_has_its_own_spool(nodes) -> None:
    """C5: every node queues in its own data directory."""
    a, b = nodes["a"], nodes["b"]
    for node in (a, b):
        assert (node.data_dir / "queue").is_dir(), list(node.data_dir.iterdir())
    assert a.data_dir != b.data_dir
