"""Bans on the server's code path with a fake clock: expiry, scopes, spam-trap hits."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from twisted.internet import task

from mailmax.plugin import Action, Recipient, Scope
from mailmax.plugins import bans
from mailmax.plugins.bans import store
from mailmax.plugins.bans.patterns import classify
from mailmax.testing import PluginHarness, make_envelope, make_session

TRAP = "trap@example.test"


@pytest.fixture
def harness(db_url: str, tmp_path: Path):
    """The bans plugin on a directory with example.test, alice and a trap, and a fake clock."""
    clock = task.Clock()
    clock.advance(1_000_000)
    harness = PluginHarness(
        bans, {"refresh_seconds": 0}, database_url=db_url, data_dir=tmp_path, clock=clock
    )
    harness.directory.add_domain("example.test", str(tmp_path / "mail"))
    harness.directory.add_domain("other.test", str(tmp_path / "other"))
    harness.directory.add_user("alice@example.test", "alicesecret")
    harness.directory.add_user("bob@other.test", "bobsecret")
    harness.directory.add_user(TRAP, "x" * 16, account_type="spamtrap")
    yield harness
    harness.close()


def ban(harness: PluginHarness, pattern: str, *, minutes: float | None = None, **where) -> None:
    kind, pattern = classify(pattern)
    now = harness.clock.seconds()
    expires = None if minutes is None else now + minutes * 60
    add = partial(store.add, kind=kind, pattern=pattern, now=now, expires=expires, **where)
    harness.result(harness.context.transaction(add, write=True))


def mail_from(harness: PluginHarness, sender: str, ip: str = "192.0.2.10"):
    session = make_session(peer_ip=ip)
    return harness.run("mailmax_mail_from", session=session, sender=sender)


def rcpt(harness: PluginHarness, sender: str, address: str, ip: str = "192.0.2.10", **flags):
    session = make_session(peer_ip=ip, **flags)
    recipient = Recipient(address, kind="local", mailbox=address)
    return harness.run(
        "mailmax_rcpt_to", session=session, envelope=make_envelope(sender), recipient=recipient
    )


def connect(harness: PluginHarness, ip: str):
    return harness.run("mailmax_connect", session=make_session(peer_ip=ip))


def test_a_ban_with_an_expiry_stops_holding_when_the_clock_passes_it(harness) -> None:
    """refused until the expiry, accepted after it, on the reactor's clock."""
    ban(harness, "*@spam.example", minutes=30)
    verdict = mail_from(harness, "joe@spam.example")
    assert (verdict.action, verdict.code, verdict.status) == (Action.REJECT, 550, "5.7.1")
    harness.advance(29 * 60)
    assert mail_from(harness, "joe@spam.example").action is Action.REJECT
    harness.advance(61)
    assert mail_from(harness, "joe@spam.example").action is Action.CONTINUE


def test_wildcards_domains_and_addresses(harness) -> None:
    """a domain bans its addresses (not its subdomains), * and ? wildcards, any case."""
    ban(harness, "bad.example")
    ban(harness, "*.worse.example")
    ban(harness, "news-??@shop.example")
    ban(harness, "Spammer@Free.Example")
    refused = [
        "a@bad.example",
        "A@BAD.EXAMPLE",
        "x@mx.worse.example",
        "news-01@shop.example",
        "spammer@free.example",
    ]
    accepted = [
        "a@sub.bad.example",
        "x@worse.example",
        "news-123@shop.example",
        "other@free.example",
        "",
    ]
    assert [mail_from(harness, s).action for s in refused] == [Action.REJECT] * len(refused)
    assert [mail_from(harness, s).action for s in accepted] == [Action.CONTINUE] * len(accepted)


def test_a_domain_ban_refuses_only_that_domains_recipients(harness) -> None:
    """a ban example.test set is checked at RCPT in the recipient's scope."""
    ban(harness, "*@spam.example", scope=store.DOMAIN, scope_value="example.test")
    assert mail_from(harness, "joe@spam.example").action is Action.CONTINUE
    verdict = rcpt(harness, "joe@spam.example", "alice@example.test")
    assert (verdict.action, verdict.code, verdict.status) == (Action.REJECT, 550, "5.7.1")
    assert "alice" not in verdict.text
    assert rcpt(harness, "joe@spam.example", "bob@other.test").action is Action.CONTINUE


def test_client_bans_by_address_and_network_and_per_listener(harness) -> None:
    """an IP or network ban refuses at connect with 554 5.7.1; a listener's only there."""
    ban(harness, "198.51.100.0/24")
    ban(harness, "2001:db8::/32")
    ban(harness, "203.0.113.9", scope=store.LISTENER, scope_value="127.0.0.1")
    verdict = connect(harness, "198.51.100.77")
    assert (verdict.action, verdict.code, verdict.status) == (Action.REJECT, 554, "5.7.1")
    assert connect(harness, "2001:db8::1").action is Action.REJECT
    assert connect(harness, "203.0.113.9").action is Action.REJECT
    other = make_session(peer_ip="203.0.113.9", local_ip="127.0.0.2")
    assert harness.run("mailmax_connect", session=other).action is Action.CONTINUE
    assert connect(harness, "192.0.2.10").action is Action.CONTINUE


def test_a_spam_trap_hit_bans_the_client_ip_for_the_configured_time(harness) -> None:
    """the trap's RCPT is answered as usual; the IP is banned for a day by default."""
    assert rcpt(harness, "spam@bad.test", TRAP, ip="192.0.2.66").action is Action.CONTINUE
    assert connect(harness, "192.0.2.66").action is Action.REJECT
    assert mail_from(harness, "spam@bad.test", ip="192.0.2.99").action is Action.CONTINUE
    (entry,) = harness.result(harness.context.transaction(store.listing, harness.clock.seconds()))
    assert (entry.kind, entry.pattern, entry.cause) == ("ip", "192.0.2.66", "spamtrap")
    assert TRAP in entry.reason and "spam@bad.test" in entry.reason
    harness.advance(24 * 3600 - 1)
    assert connect(harness, "192.0.2.66").action is Action.REJECT
    harness.advance(1)
    assert connect(harness, "192.0.2.66").action is Action.CONTINUE


def test_trusted_and_authenticated_clients_are_never_auto_banned(harness) -> None:
    """a trap hit from an authenticated or trusted session bans nothing."""
    rcpt(harness, "alice@example.test", TRAP, ip="192.0.2.70", auth_user="alice@example.test")
    rcpt(harness, "x@example.test", TRAP, ip="192.0.2.71", trusted=True)
    assert connect(harness, "192.0.2.70").action is Action.CONTINUE
    assert connect(harness, "192.0.2.71").action is Action.CONTINUE


def test_a_trap_hit_never_shortens_a_ban_an_admin_set(harness) -> None:
    """A ban by hand without expiry stays as it is after a trap hit."""
    ban(harness, "192.0.2.66")
    rcpt(harness, "spam@bad.test", TRAP, ip="192.0.2.66")
    (entry,) = harness.result(harness.context.transaction(store.listing, harness.clock.seconds()))
    assert (entry.cause, entry.expires) == ("manual", None)


def test_banning_the_sender_is_an_option(db_url: str, tmp_path: Path) -> None:
    """spamtrap_ban_sender also bans the envelope sender, spamtrap_ban_ip off bans no IP."""
    harness = PluginHarness(
        bans,
        {"refresh_seconds": 0, "spamtrap_ban_sender": True, "spamtrap_ban_ip": False},
        database_url=db_url,
        data_dir=tmp_path,
    )
    try:
        harness.directory.add_domain("example.test", str(tmp_path / "mail"))
        harness.directory.add_user(TRAP, "x" * 16, account_type="spamtrap")
        rcpt(harness, "Spam@Bad.test", TRAP, ip="192.0.2.66")
        assert connect(harness, "192.0.2.66").action is Action.CONTINUE
        assert mail_from(harness, "spam@bad.test", ip="192.0.2.8").action is Action.REJECT
    finally:
        harness.close()


def test_switched_off_for_one_domain_its_traps_and_bans_do_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """Off for other.test: its recipients are not checked and its traps ban no one."""
    harness = PluginHarness(
        bans,
        {"refresh_seconds": 0},
        overrides={Scope(domain="other.test"): {"enabled": False}},
        database_url=db_url,
        data_dir=tmp_path,
    )
    try:
        harness.directory.add_domain("example.test", str(tmp_path / "mail"))
        harness.directory.add_domain("other.test", str(tmp_path / "other"))
        harness.directory.add_user("alice@example.test", "alicesecret")
        harness.directory.add_user("trap@other.test", "x" * 16, account_type="spamtrap")
        for domain in ("example.test", "other.test"):
            ban(harness, "bad.example", scope=store.DOMAIN, scope_value=domain)
        assert rcpt(harness, "x@bad.example", "alice@example.test").action is Action.REJECT
        assert rcpt(harness, "x@bad.example", "trap@other.test").action is Action.CONTINUE
        assert connect(harness, "192.0.2.10").action is Action.CONTINUE
    finally:
        harness.close()
