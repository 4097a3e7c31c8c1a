"""Who may send to whom (P11, S1): never an open relay, whatever the address syntax."""

from __future__ import annotations

from typing import Any

import pytest

from mailmax.core.hooks import LoadedPlugin, PluginSet, Scope
from mailmax.core.model import Session
from mailmax.core.verdicts import reject
from tests.test_smtp_harness import World, close_worlds, plugin_set  # noqa: F401

RELAY_TRICKS = [
    "user@remote.test",
    "user%remote.test@example.test",
    "remote.test!user@example.test",
    "@example.test:user@remote.test",
    "@example.test,@mx.example.test:user@remote.test",
    '"user@remote.test"@example.test',
    '"user%remote.test"@example.test',
    "user@[192.0.2.99]",
    "user@[127.0.0.1]",
    "alice@[127.0.0.1]",
    "user@[IPv6:::1]",
]


def rcpt(client: Any, address: str) -> str:
    """Reply to RCPT TO:<address> in a fresh transaction."""
    client.cmd("RSET")
    client.cmd("MAIL FROM:<someone@remote.test>")
    return client.cmd(f"RCPT TO:<{address}>").strip()


@pytest.mark.parametrize("address", RELAY_TRICKS)
def test_unauthenticated_client_cannot_relay(address: str) -> None:
    """P11: no %-hack, bang path, source route, quoted '@' or IP literal makes an open relay."""
    world = World()
    client = world.connect()
    client.cmd("EHLO client.example")
    assert rcpt(client, address) == "554 5.7.1 Relay access denied"


@pytest.mark.parametrize("address", ["user@remote.test.", "user@example.test.", "a@.test"])
def test_trailing_dots_and_empty_labels_are_refused(address: str) -> None:
    """P11: a domain with a trailing dot is neither local nor relayed: 501 5.1.3."""
    client = World().connect()
    client.cmd("EHLO client.example")
    assert rcpt(client, address).startswith("501 5.1.3")


def test_nothing_was_queued_for_relay_tricks() -> None:
    """P11: after every trick in one session, DATA has no recipient to send to."""
    world = World()
    client = world.connect()
    client.cmd("EHLO client.example")
    client.cmd("MAIL FROM:<someone@remote.test>")
    for address in RELAY_TRICKS:
        client.cmd(f"RCPT TO:<{address}>")
    assert client.cmd("DATA").startswith("554 5.5.1")


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("alice@example.test", "alice@example.test"),
        ("ALICE@Example.Test", "alice@example.test"),
        ('"alice"@example.test', "alice@example.test"),
        ("@remote.test:alice@example.test", "alice@example.test"),
    ],
)
def test_local_recipients_are_accepted(address: str, mailbox: str) -> None:
    """S1: mail to local users is accepted from anyone (a source route is ignored)."""
    world = World()
    client = world.connect()
    replies = client.send_mail("x@remote.test", [address], b"hi")
    assert replies[2] == "250 2.1.5 Ok"
    assert replies[-1].startswith("250 2.0.0")
    envelope, _ = world.stored()[0]
    assert (envelope.recipients[0].kind, envelope.recipients[0].mailbox) == ("local", mailbox)


def test_unknown_disabled_and_catch_all() -> None:
    """S1, A2: unknown user 550 5.1.1, disabled user 550 5.2.1, catch-all domains accept."""
    from mailmax.core.directory.api import AccountType

    world = World()
    world.add_user("gone@example.test", "pw", account_type=AccountType.DISABLED)
    world.add_domain("catch.test")
    world.add_user("info@catch.test", "pw")
    world.edit_domain("catch.test", catch_all="info")
    client = world.connect()
    client.cmd("EHLO c")
    assert rcpt(client, "nobody@example.test").startswith("550 5.1.1")
    assert rcpt(client, "gone@example.test").startswith("550 5.2.1")
    assert rcpt(client, "anything@catch.test") == "250 2.1.5 Ok"
    assert client.proto.envelope.recipients[0].mailbox == "info@catch.test"


def test_postmaster_without_domain_goes_to_the_default_domain() -> None:
    """S1: RCPT TO:<postmaster> is accepted for the listener's default domain."""
    world = World()
    world.add_user("postmaster@example.test", "pw")
    client = world.connect()
    client.cmd("EHLO c")
    assert rcpt(client, "postmaster") == "250 2.1.5 Ok"
    assert client.proto.envelope.recipients[0].address == "postmaster@example.test"


@pytest.mark.parametrize("peer", ["10.1.2.3", "192.0.2.200"])
def test_trusted_networks_may_relay(peer: str) -> None:
    """P11: clients in trusted_networks relay without AUTH; the recipient is queued as relay."""
    world = World(smtp={"trusted_networks": ["10.0.0.0/8", "192.0.2.200/32"]})
    client = world.connect(peer=peer)
    replies = client.send_mail("a@example.test", ["user@remote.test", "u@[192.0.2.1]"], b"hi")
    assert replies[-1].startswith("250 2.0.0")
    envelope, _ = world.stored()[0]
    assert [r.kind for r in envelope.recipients] == ["relay", "relay"]
    other = world.connect(peer="192.0.2.201")
    other.cmd("EHLO c")
    assert rcpt(other, "user@remote.test") == "554 5.7.1 Relay access denied"


def test_authenticated_client_may_relay() -> None:
    """P11: an authenticated session may send anywhere."""
    world = World()
    client = world.connect(implicit_tls=True)
    client.cmd("EHLO c")
    assert client.login().startswith("235")
    assert rcpt(client, "user@remote.test") == "250 2.1.5 Ok"


def test_connect_plugin_can_allow_relaying() -> None:
    """P11, P8: connection control may set session.relay_allowed at connect."""

    def mailmax_connect(session: Session) -> None:
        session.relay_allowed = True

    world = World(plugins=plugin_set(mailmax_connect=mailmax_connect))
    client = world.connect()
    client.cmd("EHLO c")
    assert rcpt(client, "user@remote.test") == "250 2.1.5 Ok"


def test_rcpt_hook_runs_in_the_recipient_scope() -> None:
    """S1: the rcpt_to hook gets the recipient's scope (domain, user); its reject refuses it."""
    scopes: list[Scope] = []

    def resolver(plugin: LoadedPlugin, scope: Scope) -> tuple[bool, dict[str, Any]]:
        scopes.append(scope)
        return True, {}

    def mailmax_rcpt_to(recipient: Any) -> Any:
        return reject("Not this one", 550, "5.7.1") if recipient.address.startswith("bob") else None

    plugin = plugin_set(mailmax_rcpt_to=mailmax_rcpt_to)
    world = World(plugins=PluginSet(plugin.plugins, resolver))
    client = world.connect()
    client.cmd("EHLO c")
    assert rcpt(client, "alice@example.test") == "250 2.1.5 Ok"
    assert rcpt(client, "bob@example.test") == "550 5.7.1 Not this one"
    rcpt_scopes = [s for s in scopes if s.domain]
    assert rcpt_scopes[0].domain == "example.test"
    assert rcpt_scopes[0].user == "alice@example.test"
