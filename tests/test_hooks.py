"""The policy driver: plugin order, asynchronous verdicts, failure isolation (DESIGN 4)."""

from __future__ import annotations

import types

import pytest
from twisted.internet import defer

from mailmax.core import verdicts
from mailmax.core.hooks import LoadedPlugin, PluginError, PluginSet, Scope, build_plugin_set
from mailmax.core.hookspecs import hookimpl
from mailmax.core.verdicts import Action


def plugin(name: str, **hooks) -> LoadedPlugin:
    """A real plugin module made in the test, with the given hook implementations."""
    module = types.ModuleType(f"test_plugin_{name}")
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return LoadedPlugin(name, module, {"name": name})


def result_of(d: defer.Deferred):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_no_plugins_means_continue():
    assert result_of(PluginSet([]).run_policy("mailmax_helo", helo="x")).action is Action.CONTINUE


def test_first_decisive_verdict_wins_in_list_order():
    calls = []

    def noop(helo):
        calls.append("a")

    def refuse(helo, config):
        calls.append(config["name"])
        return verdicts.reject("go away", 550, "5.7.1")

    def never(helo):
        calls.append("c")
        return verdicts.accept()

    ps = PluginSet(
        [
            plugin("a", mailmax_helo=noop),
            plugin("b", mailmax_helo=refuse),
            plugin("c", mailmax_helo=never),
        ]
    )
    verdict = result_of(ps.run_policy("mailmax_helo", helo="client"))
    assert verdict.action is Action.REJECT and verdict.plugin == "b"
    assert verdict.reply() == b"550 5.7.1 go away"
    assert calls == ["a", "b"]


def test_asynchronous_verdict_is_awaited_in_order():
    pending: defer.Deferred = defer.Deferred()
    seen = []

    def slow(helo):
        return pending

    def later(helo):
        seen.append("later ran")
        return verdicts.tempfail("busy", 451, "4.3.2")

    ps = PluginSet([plugin("slow", mailmax_helo=slow), plugin("later", mailmax_helo=later)])
    out = []
    ps.run_policy("mailmax_helo", helo="x").addCallback(out.append)
    assert out == [] and seen == []
    pending.callback(None)
    assert seen == ["later ran"]
    assert out[0].action is Action.TEMPFAIL and out[0].code == 451


def test_a_plugin_that_raises_gives_a_temporary_failure_named_after_it():
    def broken(helo):
        raise RuntimeError("boom")

    verdict = result_of(
        PluginSet([plugin("broken", mailmax_helo=broken)]).run_policy("mailmax_helo", helo="x")
    )
    assert verdict.action is Action.TEMPFAIL and verdict.code == 451 and verdict.plugin == "broken"


def test_an_errback_or_a_wrong_type_is_a_temporary_failure_too():
    ps = PluginSet([plugin("e", mailmax_helo=lambda helo: defer.fail(ValueError("x")))])
    assert result_of(ps.run_policy("mailmax_helo", helo="x")).action is Action.TEMPFAIL
    ps = PluginSet([plugin("w", mailmax_helo=lambda helo: "yes")])
    assert result_of(ps.run_policy("mailmax_helo", helo="x")).action is Action.TEMPFAIL


def test_scope_resolver_can_disable_a_plugin_for_a_domain():
    def refuse(recipient):
        return verdicts.reject()

    def resolver(p, scope):
        return scope.domain != "quiet.test", p.settings

    ps = PluginSet([plugin("r", mailmax_rcpt_to=refuse)], resolver)
    loud = result_of(ps.run_policy("mailmax_rcpt_to", Scope(domain="loud.test"), recipient=None))
    quiet = result_of(ps.run_policy("mailmax_rcpt_to", Scope(domain="quiet.test"), recipient=None))
    assert loud.action is Action.REJECT and quiet.action is Action.CONTINUE


def test_merge_and_first_result_helpers():
    ps = PluginSet(
        [
            plugin("one", mailmax_expand_recipient=lambda mailbox: [mailbox, "x@example.test"]),
            plugin("two", mailmax_expand_recipient=lambda mailbox: None),
            plugin("three", mailmax_expand_recipient=lambda mailbox: ["y@example.test"]),
        ]
    )
    assert ps.all_results("mailmax_expand_recipient", mailbox="m@example.test") == [
        ["m@example.test", "x@example.test"],
        ["y@example.test"],
    ]
    assert ps.first_result("mailmax_expand_recipient", mailbox="m") == ["m", "x@example.test"]


def test_unknown_plugin_and_refused_settings_are_clear_errors():
    with pytest.raises(PluginError, match=r"'no\.such\.plugin' cannot be imported"):
        build_plugin_set(["no.such.plugin"], {})


def test_hook_implementation_with_a_typo_is_refused():
    module = types.ModuleType("typo")
    module.mailmax_hello = hookimpl(lambda helo: None)
    with pytest.raises(PluginError, match="typo"):
        PluginSet([LoadedPlugin("typo", module)])


def test_a_coroutine_that_waits_keeps_the_host_and_its_order():
    """A coroutine hook's steps after an await still see current_host(); its exception
    there is a temporary failure; the plugins after it wait for it."""
    from mailmax.plugin import current_host

    pending: defer.Deferred = defer.Deferred()
    seen = []

    async def waits(helo):
        seen.append(("before", current_host()))
        value = await pending
        seen.append(("after", current_host()))
        if value == "fail":
            raise RuntimeError("after the await")
        return None

    def later(helo):
        seen.append(("later", current_host()))
        return verdicts.reject("no", 550, "5.7.1")

    host = object()
    ps = PluginSet(
        [plugin("waits", mailmax_helo=waits), plugin("later", mailmax_helo=later)], host=host
    )
    out = []
    ps.run_policy("mailmax_helo", helo="x").addCallback(out.append)
    assert out == [] and seen == [("before", host)]
    pending.callback("go on")
    assert seen == [("before", host), ("after", host), ("later", host)]
    assert out[0].action is Action.REJECT and out[0].plugin == "later"

    pending = defer.Deferred()
    out.clear()
    ps.run_policy("mailmax_helo", helo="x").addCallback(out.append)
    pending.callback("fail")
    assert out[0].action is Action.TEMPFAIL and out[0].plugin == "waits"


def test_a_coroutine_that_waits_can_be_cancelled():
    pending: defer.Deferred = defer.Deferred()
    cancelled = []

    async def waits(helo):
        try:
            await pending
        except defer.CancelledError:
            cancelled.append(True)
            raise

    ps = PluginSet([plugin("waits", mailmax_helo=waits)])
    d = ps.run_policy("mailmax_helo", helo="x")
    d.cancel()
    assert cancelled == [True]
    assert result_of(d).action is Action.TEMPFAIL


def test_answers_are_kept_per_scope_until_the_resolver_generation_changes():
    def refuse(recipient):
        return verdicts.reject()

    class Resolver:
        generation = 1
        quiet = {"quiet.test"}
        calls = 0

        def __call__(self, p, scope):
            self.calls += 1
            return scope.domain not in self.quiet, p.settings

    resolver = Resolver()
    ps = PluginSet([plugin("r", mailmax_rcpt_to=refuse)], resolver)

    def action(domain):
        verdict = result_of(ps.run_policy("mailmax_rcpt_to", Scope(domain=domain), recipient=None))
        return verdict.action

    assert action("quiet.test") is Action.CONTINUE and action("loud.test") is Action.REJECT
    assert action("quiet.test") is Action.CONTINUE and resolver.calls == 2  # kept
    resolver.quiet = {"loud.test"}
    assert action("quiet.test") is Action.CONTINUE  # same generation: the kept answer
    resolver.generation = 2
    assert action("quiet.test") is Action.REJECT and action("loud.test") is Action.CONTINUE


def test_what_a_plugin_sets_in_a_context_variable_stays_in_its_chain():
    import contextvars

    mark: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="caller")

    def sets(helo):
        mark.set("plugin")

    async def sets_too(helo):
        mark.set("coroutine")

    ps = PluginSet([plugin("a", mailmax_helo=sets), plugin("b", mailmax_helo=sets_too)])
    assert result_of(ps.run_policy("mailmax_helo", helo="x")).action is Action.CONTINUE
    assert mark.get() == "caller"
