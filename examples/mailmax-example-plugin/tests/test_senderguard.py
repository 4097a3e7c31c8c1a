"""senderguard's own tests, written the way a plugin author writes them."""

from __future__ import annotations

import mailmax_example_plugin as senderguard
import pytest

from mailmax.plugin import Action, PluginError, Recipient, Scope
from mailmax.testing import PluginHarness, make_envelope


def rcpt(harness: PluginHarness, address: str, sender: str) -> Action:
    """RCPT TO ``address``: the harness runs it in that recipient's scope, as the server does."""
    envelope = make_envelope(sender)
    recipient = Recipient(address, mailbox=address)
    return harness.run("mailmax_rcpt_to", envelope=envelope, recipient=recipient).action


def test_refuses_blocked_sender_domains_per_scope() -> None:
    harness = PluginHarness(
        senderguard,
        {"blocked": ["spam.example"]},
        overrides={Scope(domain="one.test"): {"blocked": ["junk.example"]}},
    )
    assert rcpt(harness, "cid@two.test", "x@spam.example") is Action.REJECT
    assert rcpt(harness, "ann@one.test", "x@spam.example") is Action.CONTINUE
    assert rcpt(harness, "ann@one.test", "x@junk.example") is Action.REJECT


def test_a_star_is_refused_at_configuration() -> None:
    with pytest.raises(PluginError, match="would refuse all mail"):
        PluginHarness(senderguard, {"blocked": ["*"]})


def test_over_real_smtp(mailmax_server) -> None:
    server = mailmax_server(
        plugins=["senderguard"], settings={"senderguard": {"blocked": ["spam.example"]}}
    )
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail("x@spam.example")
        assert client.rcpt("alice@example.test")[0] == 550
