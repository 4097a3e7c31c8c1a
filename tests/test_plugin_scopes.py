"""Plugin scopes, declared settings and ordering (DESIGN 4; M4 for the messages).

Plugins here are real files in a plugins directory; overrides live in a real SQLite directory.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from mailmax.core import config
from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.hooks import PluginError, Scope
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.pluginhost.reload import build
from mailmax.core.pluginhost.scopes import OverrideSource
from mailmax.core.verdicts import Action

GREETER = """
from mailmax.plugin import Field, PluginSettings, hookimpl, reject

SCOPES = ("system", "listener", "domain", "user")


class Settings(PluginSettings):
    word: str = Field("hello", description="The word to say.")
    limit: int = Field(3, ge=1, le=10, description="How many times.")
    tags: list[str] = Field(default_factory=list, description="Tags.")
    mode: "Literal['soft', 'hard']" = Field("soft", description="How strict.")


@hookimpl
def mailmax_rcpt_to(recipient, config):
    if config.word == "block":
        return reject(f"blocked for {recipient.address}", 550, "5.7.1")
    return None


@hookimpl
def mailmax_helo(helo, config):
    if config.word == "block":
        return reject("blocked helo", 550, "5.7.1")
    return None
"""


def write_plugin(data_dir: Path, name: str, source: str) -> None:
    folder = data_dir / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text("from typing import Literal\n" + textwrap.dedent(source))


def make_settings(data_dir: Path, **plugins: Any) -> config.Settings:
    return config.parse({"server": {"data_dir": str(data_dir)}, "plugins": plugins})


@pytest.fixture
def directory(tmp_path: Path) -> Any:
    d = SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}", base_dir=tmp_path)
    d.add_domain("one.test", "mail/one.test")
    d.add_domain("two.test", "mail/two.test")
    for user in ("ann@one.test", "bob@one.test", "cid@two.test"):
        d.add_user(user, "secret-password")
    yield d
    d.close()


def fired(d: defer.Deferred) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def word(plugin_set: Any, scope: Scope) -> tuple[bool, str]:
    plugin = plugin_set.get("greeter")
    enabled, settings = plugin_set.resolve(plugin, scope)
    return enabled, settings.word


def test_user_over_domain_over_system(tmp_path: Path, directory: Any) -> None:
    """The effective setting for a recipient is user over domain over system."""
    write_plugin(tmp_path, "greeter", GREETER)
    directory.set_plugin_override("greeter", "domain", "one.test", settings={"word": "dom"})
    directory.set_plugin_override("greeter", "user", "ann@one.test", settings={"word": "ann"})
    settings = make_settings(
        tmp_path, enabled=["greeter"], settings={"greeter": {"word": "sys", "limit": 5}}
    )
    ps = build(settings, source=OverrideSource(directory))
    assert word(ps, Scope(domain="one.test", user="ann@one.test")) == (True, "ann")
    assert word(ps, Scope(domain="one.test", user="bob@one.test")) == (True, "dom")
    assert word(ps, Scope(domain="two.test", user="cid@two.test")) == (True, "sys")
    assert word(ps, Scope()) == (True, "sys")
    # keys not set at a narrower scope come from the wider one
    _, ann = ps.resolve(ps.get("greeter"), Scope(domain="one.test", user="ann@one.test"))
    assert ann.limit == 5 and ann.mode == "soft"


def test_narrower_switch_wins_both_ways(tmp_path: Path, directory: Any) -> None:
    """Disabling at a narrower scope wins; a user may switch back on what the domain turned off,
    and a plugin off system-wide runs where a domain switches it on."""
    write_plugin(tmp_path, "greeter", GREETER)
    directory.set_plugin_override("greeter", "domain", "one.test", enabled=False)
    directory.set_plugin_override("greeter", "user", "bob@one.test", enabled=True)
    ps = build(make_settings(tmp_path, enabled=["greeter"]), source=OverrideSource(directory))
    assert word(ps, Scope(domain="one.test", user="ann@one.test"))[0] is False
    assert word(ps, Scope(domain="one.test", user="bob@one.test"))[0] is True
    assert word(ps, Scope(domain="two.test", user="cid@two.test"))[0] is True

    directory.set_plugin_override("greeter", "domain", "one.test", enabled=None)
    directory.set_plugin_override("greeter", "user", "bob@one.test", enabled=None)
    directory.set_plugin_override("greeter", "domain", "two.test", enabled=True)
    ps = build(make_settings(tmp_path, enabled=[]), source=OverrideSource(directory))
    assert ps.get("greeter").system_enabled is False
    assert word(ps, Scope())[0] is False
    assert word(ps, Scope(domain="one.test", user="ann@one.test"))[0] is False
    assert word(ps, Scope(domain="two.test", user="cid@two.test"))[0] is True


def test_each_recipient_gets_its_own_treatment(tmp_path: Path, directory: Any) -> None:
    """Recipient-level hooks run with each recipient's scope; connection hooks with the system
    scope plus the listening address's table."""
    write_plugin(tmp_path, "greeter", GREETER)
    directory.set_plugin_override("greeter", "user", "ann@one.test", settings={"word": "block"})
    settings = make_settings(
        tmp_path,
        enabled=["greeter"],
        settings={"greeter": {"listeners": {"192.0.2.7": {"word": "block"}}}},
    )
    ps = build(settings, source=OverrideSource(directory))

    class Rcpt:
        def __init__(self, address: str) -> None:
            self.address = address

    ann = fired(
        ps.run_policy(
            "mailmax_rcpt_to",
            Scope(domain="one.test", user="ann@one.test"),
            recipient=Rcpt("ann@one.test"),
        )
    )
    bob = fired(
        ps.run_policy(
            "mailmax_rcpt_to",
            Scope(domain="one.test", user="bob@one.test"),
            recipient=Rcpt("bob@one.test"),
        )
    )
    assert ann.action is Action.REJECT and ann.plugin == "greeter"
    assert bob.action is Action.CONTINUE
    assert (
        fired(ps.run_policy("mailmax_helo", Scope(listener="127.0.0.1"), helo="x")).decisive
        is False
    )
    blocked = fired(ps.run_policy("mailmax_helo", Scope(listener="192.0.2.7"), helo="x"))
    assert blocked.action is Action.REJECT


def test_overrides_are_seen_after_a_refresh_without_a_rebuild(
    tmp_path: Path, directory: Any
) -> None:
    """A change made with the CLI shows once the override snapshot is refreshed."""
    write_plugin(tmp_path, "greeter", GREETER)
    source = OverrideSource(directory)
    ps = build(make_settings(tmp_path, enabled=["greeter"]), source=source)
    scope = Scope(domain="one.test", user="ann@one.test")
    assert word(ps, scope) == (True, "hello")
    assert source.refresh() is False  # nothing changed: one cheap query, no re-read
    directory.set_plugin_override("greeter", "domain", "one.test", settings={"word": "new"})
    assert source.refresh() is True
    assert word(ps, scope) == (True, "new")
    directory.set_plugin_override("greeter", "domain", "one.test")  # removed
    assert source.refresh() is True
    assert word(ps, scope) == (True, "hello")


def test_bad_values_are_refused_saying_what_is_allowed(tmp_path: Path, directory: Any) -> None:
    """M4: a bad system value, listener value or stored override stops the build with the
    plugin, the scope, the key and what it allows."""
    write_plugin(tmp_path, "greeter", GREETER)
    with pytest.raises(PluginError) as bad:
        build(make_settings(tmp_path, enabled=["greeter"], settings={"greeter": {"limit": 50}}))
    text = str(bad.value)
    assert "greeter (system)" in text and "limit=50" in text and "less than or equal to 10" in text
    assert "integer" in text

    with pytest.raises(PluginError, match=r"unknown setting 'colour'.*word, limit, tags, mode"):
        build(make_settings(tmp_path, enabled=["greeter"], settings={"greeter": {"colour": 1}}))

    with pytest.raises(PluginError, match=r"mode='loud' is not allowed.*one of 'soft', 'hard'"):
        build(
            make_settings(
                tmp_path,
                enabled=["greeter"],
                settings={"greeter": {"listeners": {"127.0.0.1": {"mode": "loud"}}}},
            )
        )

    directory.set_plugin_override("greeter", "user", "ann@one.test", settings={"limit": "many"})
    with pytest.raises(PluginError, match=r"greeter \(user ann@one.test\): limit='many'"):
        build(make_settings(tmp_path, enabled=["greeter"]), source=OverrideSource(directory))


def test_a_stored_bad_override_is_a_temporary_failure_not_an_accept(
    tmp_path: Path, directory: Any
) -> None:
    """A value written behind the platform's back makes the hook answer 4xx, nothing else."""
    write_plugin(tmp_path, "greeter", GREETER)
    source = OverrideSource(directory)
    ps = build(make_settings(tmp_path, enabled=["greeter"]), source=source)
    directory.set_plugin_override("greeter", "domain", "one.test", settings={"limit": -1})
    source.refresh()
    verdict = fired(
        ps.run_policy(
            "mailmax_rcpt_to", Scope(domain="one.test", user="ann@one.test"), recipient=None
        )
    )
    assert verdict.action is Action.TEMPFAIL and verdict.code == 451


def test_order_is_the_system_list_then_switched_off_plugins_by_name(
    tmp_path: Path, directory: Any
) -> None:
    """The documented ordering rule: [plugins] enabled order first, then by name."""
    for name in ("zeta", "alpha", "mid", "beta"):
        write_plugin(tmp_path, name, GREETER)
    directory.set_plugin_override("beta", "domain", "one.test", enabled=True)
    settings = make_settings(tmp_path, enabled=["zeta", "alpha"], settings={"mid": {"word": "x"}})
    ps = build(settings, source=OverrideSource(directory))
    assert [p.name for p in ps.plugins] == ["zeta", "alpha", "beta", "mid"]
    assert ps.hook_order()["mailmax_rcpt_to"] == ["zeta", "alpha", "beta", "mid"]
    assert [p.system_enabled for p in ps.plugins] == [True, True, False, False]
    assert all(p.origin == "plugins directory" for p in ps.plugins)


def test_cli_values_are_parsed_by_the_declared_type() -> None:
    """`key=value` text becomes the declared type; lists take commas."""
    from pydantic import Field

    class S(schemas.PluginSettings):
        n: int = Field(1)
        on: bool = Field(False)
        names: list[str] = Field(default_factory=list)
        text: str = Field("")

    assert schemas.parse_value(S, "n", "5") == 5
    assert schemas.parse_value(S, "on", "true") is True
    assert schemas.parse_value(S, "names", "a@x.test, b@x.test") == ["a@x.test", "b@x.test"]
    assert schemas.parse_value(S, "names", '["c"]') == ["c"]
    assert schemas.parse_value(S, "text", "007") == "007"
    settings = schemas.validate("p", S, {"n": "7", "on": "yes"})
    assert settings["n"] == 7 and settings.get("on") is True and settings.get("nope") is None
