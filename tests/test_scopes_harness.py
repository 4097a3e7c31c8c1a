"""The test kit applies scopes as the server does; declared scopes are checked at load time;
message changes are made once with the limits still enforced."""

from __future__ import annotations

import types
from typing import Any

import pytest

from mailmax.core.pluginhost.changes import ChangeError, MessageChanges
from mailmax.plugin import (
    Action,
    Field,
    PluginError,
    PluginSettings,
    Scope,
    hookimpl,
    reject,
)
from mailmax.testing import PluginHarness, make_envelope, make_session

MESSAGE = b"From: a@example.org\r\nSubject: hello there\r\n\r\nBody.\r\n"


def plugin(**attrs: Any) -> types.SimpleNamespace:
    """A plugin object with the given hooks and attributes."""
    return types.SimpleNamespace(**attrs)


class WordSettings(PluginSettings):
    word: str = Field("never", description="Refused in the message.")
    tag: str = Field("", description="A header to add.")


@hookimpl
def refuse_word(envelope, message, changes, config):
    if config.word.encode() in message:
        return reject("Word refused", 550, "5.7.1")
    if config.tag:
        changes.add_header("X-Tag", config.tag)
    return None


def word_plugin() -> Any:
    return plugin(mailmax_data=refuse_word, Settings=WordSettings, SCOPES=("system", "domain"))


def test_a_data_hook_on_for_one_domain_acts_on_that_domains_recipients_only() -> None:
    """The harness's data run is the server's: A's recipients refuse, B's accept, so the one
    reply accepts and A's copy is listed as refused."""
    harness = PluginHarness(
        word_plugin(), overrides={Scope(domain="a.test"): {"word": "hello"}}, name="word"
    )
    only_a = make_envelope("x@example.org", ["ann@a.test"])
    assert harness.run("mailmax_data", envelope=only_a, message=MESSAGE).action is Action.REJECT
    only_b = make_envelope("x@example.org", ["ben@b.test"])
    assert harness.run("mailmax_data", envelope=only_b, message=MESSAGE).action is Action.CONTINUE
    both = make_envelope("x@example.org", ["ann@a.test", "ben@b.test"])
    decision = harness.data(both, MESSAGE)
    assert decision.refusal is None
    assert [r.address for g in decision.refused for r in g.recipients] == ["ann@a.test"]
    assert [r.address for g in decision.copies for r in g.recipients] == ["ben@b.test"]


def test_changes_differ_per_recipient_group() -> None:
    """Each group gets its own changed message; equal messages share one copy."""
    harness = PluginHarness(
        word_plugin(), {"tag": "sys"}, overrides={Scope(domain="a.test"): {"tag": "a"}}
    )
    envelope = make_envelope("x@example.org", ["ann@a.test", "ben@b.test", "cid@c.test"])
    decision = harness.data(envelope, MESSAGE)
    assert decision.refusal is None and not decision.refused
    by_rcpts = {tuple(r.address for r in c.recipients): c.message for c in decision.copies}
    assert by_rcpts[("ann@a.test",)].startswith(b"X-Tag: a\r\nFrom:")
    assert by_rcpts[("ben@b.test", "cid@c.test")].startswith(b"X-Tag: sys\r\nFrom:")


def test_a_scope_the_server_never_uses_is_refused_by_the_harness() -> None:
    """A test cannot pass where the server would ignore the setting."""
    harness = PluginHarness(word_plugin())
    with pytest.raises(ValueError, match="each recipient's scope"):
        harness.run("mailmax_data", Scope(domain="a.test"), envelope=make_envelope(), message=b"")

    @hookimpl
    def helo_hook(helo):
        return reject("no", 550, "5.7.1")

    helo = PluginHarness(plugin(mailmax_helo=helo_hook), name="helo")
    with pytest.raises(ValueError, match="never runs with a domain scope"):
        helo.run("mailmax_helo", Scope(domain="a.test"), session=make_session(), helo="x")
    with pytest.raises(PluginError, match="cannot be set per domain; it works per system"):
        PluginHarness(
            plugin(mailmax_helo=helo_hook), overrides={Scope(domain="a.test"): {"enabled": False}}
        )


def test_declared_scopes_the_hooks_cannot_honour_refuse_the_plugin() -> None:
    """A connection-only plugin declaring the domain scope is refused at load, saying why."""

    @hookimpl
    def helo_hook(helo):
        return None

    with pytest.raises(PluginError, match=r"declares the domain scope.*mailmax_helo"):
        PluginHarness(plugin(mailmax_helo=helo_hook, SCOPES=("system", "domain")), name="h")
    with pytest.raises(PluginError, match="unknown scope 'global'"):
        PluginHarness(plugin(mailmax_helo=helo_hook, SCOPES=("global",)), name="h")


def test_mail_from_scope_is_the_authenticated_senders() -> None:
    """Unauthenticated: system and listener; authenticated local user: their domain and user."""
    seen: list[str] = []

    @hookimpl
    def mail_from(sender, config):
        seen.append(config["who"])

    harness = PluginHarness(
        plugin(mailmax_mail_from=mail_from),
        {"who": "system"},
        overrides={Scope(user="bob@a.test"): {"who": "bob"}},
    )
    envelope = make_envelope("bob@a.test")
    harness.run("mailmax_mail_from", session=make_session(), envelope=envelope, sender="bob@a.test")
    authed = make_session(auth_user="bob@a.test")
    harness.run("mailmax_mail_from", session=authed, envelope=envelope, sender="bob@a.test")
    assert seen == ["system", "bob"]


def test_message_changes_are_made_once_with_limits() -> None:
    """Headers added and removed, a MIME part replaced; a result over the limits is refused."""
    changes = MessageChanges()
    changes.add_header("X-One", "1")
    changes.remove_header("subject")
    assert changes.apply(MESSAGE) == b"X-One: 1\r\nFrom: a@example.org\r\n\r\nBody.\r\n"
    with pytest.raises(ChangeError, match="Received"):
        changes.remove_header("Received")
    with pytest.raises(ChangeError, match="one line"):
        changes.add_header("X-Bad", "a\r\nInjected: yes")

    mime = (
        b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
        b"--b\r\nContent-Type: application/x-bad\r\n\r\nEVIL\r\n--b--\r\n"
    )
    changes = MessageChanges()
    changes.replace_part("2", b"Content-Type: text/plain\r\n\r\nremoved\r\n")
    changed = changes.apply(mime)
    assert b"EVIL" not in changed and b"removed" in changed and b"text\r\n" in changed
    with pytest.raises(ChangeError, match="no MIME part 3"):
        bad = MessageChanges()
        bad.replace_part("3", b"\r\nx")
        bad.apply(mime)

    @hookimpl
    def grow(changes):
        changes.replace_message(b"Received: x\r\n" * 3 + b"Subject: big\r\n\r\n" + b"x" * 500)

    harness = PluginHarness(plugin(mailmax_data=grow), name="grow", max_message_size=300)
    envelope = make_envelope("x@example.org", ["ann@a.test"])
    verdict = harness.run("mailmax_data", envelope=envelope, message=MESSAGE)
    assert (verdict.code, verdict.status, verdict.plugin) == (552, "5.3.4", "grow")
    hops = PluginHarness(plugin(mailmax_data=grow), name="grow", max_hops=2)
    verdict = hops.run("mailmax_data", envelope=envelope, message=MESSAGE)
    assert (verdict.code, verdict.status) == (554, "5.4.6")


def test_delivery_outcomes_check_their_arguments() -> None:
    """A bad folder, mailbox or redirect target is refused where the plugin builds it."""
    from mailmax.plugin import deliver_to, discard, quarantine, redirect

    assert deliver_to("Junk").note() == "to folder Junk"
    assert quarantine("virus", mailbox="q@example.com").by("scan").note() == (
        "quarantined in q@example.com/Quarantine by scan: virus"
    )
    assert redirect("a@example.org", reason="away").note() == "redirected to a@example.org: away"
    assert discard("dup").by("dedup").note() == "discarded by dedup: dup"
    with pytest.raises(ValueError, match="not a folder name"):
        deliver_to("../etc")
    with pytest.raises(ValueError, match="not a mailbox address"):
        quarantine("x", mailbox="nobody")
    with pytest.raises(ValueError, match="at least one address"):
        redirect()
    with pytest.raises(ValueError, match="not an address"):
        redirect("nowhere")
