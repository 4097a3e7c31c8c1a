"""Scheduled work of plugins, driven by a fake clock (``twisted.internet.task.Clock``).

Intervals and daily times, failures that do not stop the schedule, no run twice at once, and
the swap of a reload (old timers stop, runs in progress finish, new ones start).
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet import defer, task

from mailmax.core.hooks import LoadedPlugin, PluginSet, Scope
from mailmax.core.pluginhost.host import PluginHost
from mailmax.core.pluginhost.lifecycle import PluginLifecycle
from mailmax.core.pluginhost.schedule import Daily, next_daily
from mailmax.plugin import Field, PluginError, PluginSettings, current_host, daily, every
from mailmax.testing import PluginHarness
from tests.plugins import tally


def plugin_module(name: str, **members: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in members.items():
        setattr(module, key, value)
    return module


def test_an_interval_task_runs_once_per_interval() -> None:
    """Every(60) runs 60 s after the start, then every 60 s, on the given clock."""
    runs: list[float] = []
    clock = task.Clock()

    @every(60)
    def tick(host):
        runs.append(host.clock.seconds())

    harness = PluginHarness(plugin_module("ticker", tick=tick), clock=clock)
    harness.advance(59)
    assert runs == []
    harness.advance(1)
    assert runs == [60]
    harness.advance(60)
    harness.advance(60)
    assert runs == [60, 120, 180]
    assert harness.metrics()["counters"] == {"ticker.task.tick.runs": 3}
    harness.advance(120)
    assert runs == [60, 120, 180, 240, 300]
    clock.advance(250)  # a clock that jumps: the missed runs are not made up
    assert runs == [60, 120, 180, 240, 300, 550]
    assert harness.next_run("tick") == 600


def test_a_failing_task_is_logged_counted_and_runs_again() -> None:
    """A task that raises or fails its Deferred does not stop its schedule."""
    calls: list[int] = []

    @every(10)
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run breaks")
        if len(calls) == 2:
            return defer.fail(ValueError("second run fails"))
        return None

    harness = PluginHarness(plugin_module("flaky", flaky=flaky))
    harness.advance(10)
    harness.advance(10)
    harness.advance(10)
    assert len(calls) == 3
    assert harness.metrics()["counters"] == {
        "flaky.task.flaky.failures": 2,
        "flaky.task.flaky.runs": 3,
    }


def test_a_task_never_runs_twice_at_once() -> None:
    """A run due while the previous one is pending is skipped (and counted)."""
    pending: list[defer.Deferred[None]] = []

    @every(5)
    def slow():
        d: defer.Deferred[None] = defer.Deferred()
        pending.append(d)
        return d

    harness = PluginHarness(plugin_module("slow", slow=slow))
    harness.advance(5)
    harness.advance(5)
    harness.advance(5)
    assert len(pending) == 1
    pending[0].callback(None)
    harness.advance(5)
    assert len(pending) == 2
    assert harness.metrics()["counters"] == {"slow.task.slow.runs": 2, "slow.task.slow.skipped": 2}


def test_coroutine_tasks_get_the_host_context_and_settings() -> None:
    """A task takes host, config and context by name; current_host() works inside."""
    seen: list[Any] = []

    class Settings(PluginSettings):
        every_seconds: float = Field(30.0, description="interval")
        word: str = Field("hello", description="a word")

    @every("every_seconds")
    async def note(config, context):
        seen.append((config.word, context.name, current_host() is context.host))

    module = plugin_module("noter", Settings=Settings, note=note)
    harness = PluginHarness(module, {"every_seconds": 2, "word": "hi"})
    harness.advance(2)
    assert seen == [("hi", "noter", True)]


def test_daily_tasks_run_at_their_time_of_day() -> None:
    """V5: daily("03:00") runs at 03:00 each day, in UTC or the zone given."""
    runs: list[float] = []

    @daily("03:00")
    def nightly(host):
        runs.append(host.clock.seconds())

    clock = task.Clock()
    clock.advance(datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp())
    harness = PluginHarness(plugin_module("nightly", nightly=nightly), clock=clock)
    first = datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp()
    assert harness.next_run("nightly") == first
    harness.advance(first - clock.seconds() - 1)
    assert runs == []
    harness.advance(1)
    harness.advance(86400)
    assert runs == [first, first + 86400]
    # Paris is UTC+1 in winter, UTC+2 after the last Sunday of March
    paris = Daily("03:00", "Europe/Paris")
    winter = datetime(2026, 3, 27, 12, 0, tzinfo=UTC).timestamp()
    assert next_daily(winter, paris) == datetime(2026, 3, 28, 2, 0, tzinfo=UTC).timestamp()
    summer = datetime(2026, 3, 29, 12, 0, tzinfo=UTC).timestamp()
    assert next_daily(summer, paris) == datetime(2026, 3, 30, 1, 0, tzinfo=UTC).timestamp()


def test_bad_schedules_are_refused_saying_why() -> None:
    """Bad times, zones, arguments and interval settings are refused at load."""
    with pytest.raises(ValueError, match="HH:MM"):
        daily("25:00")
    with pytest.raises(ValueError, match="unknown time zone"):
        daily("03:00", tz="Mars/Olympus")
    with pytest.raises(ValueError, match=r"at least 0\.05s"):
        every(0)
    with pytest.raises(TypeError, match="unknown arguments session"):
        every(5)(lambda session: None)

    @every("no_such_setting")
    def orphan():
        return None

    with pytest.raises(PluginError, match="runs every 'no_such_setting', but that setting is None"):
        PluginHarness(plugin_module("orphan", orphan=orphan))
    with pytest.raises(
        PluginError, match="task <lambda> runs daily at 'run_at', but that setting is None"
    ):
        PluginHarness(plugin_module("late", late=daily("run_at", name="late")(lambda: None)))
    with pytest.raises(PluginError, match="task name '<lambda>'"):
        PluginHarness(plugin_module("anonymous", task=every(5)(lambda: None)))


def _set(name: str, module: types.ModuleType, host: PluginHost) -> PluginSet:
    return PluginSet([LoadedPlugin(name, module)], host=host)


def test_a_reload_stops_the_old_timers_and_starts_the_new_set() -> None:
    """After a swap only the new set's tasks run; a run in progress finishes first and
    the new set's same task does not start beside it."""
    clock = task.Clock()
    host = PluginHost(clock=clock)
    lifecycle = PluginLifecycle(host)
    log: list[str] = []
    pending: list[defer.Deferred[None]] = []

    @every(10, name="work")
    def old_work():
        log.append("old")
        d: defer.Deferred[None] = defer.Deferred()
        pending.append(d)
        return d

    @every(10, name="work")
    def new_work():
        log.append("new")

    old_set = _set("worker", plugin_module("worker", work=old_work), host)
    lifecycle.activate(lifecycle.prepare(old_set))
    clock.advance(10)
    assert log == ["old"]
    new_set = _set("worker", plugin_module("worker", work=new_work), host)
    lifecycle.activate(lifecycle.prepare(new_set))
    clock.advance(10)
    assert log == ["old"]  # the old run is still going: the new one waits its next turn
    pending[0].callback(None)
    clock.advance(10)
    clock.advance(10)
    assert log == ["old", "new", "new"]
    assert host.metrics.value("worker.task.work.skipped") == 1
    stopped = lifecycle.stop()
    assert stopped.called
    clock.advance(100)
    assert log == ["old", "new", "new"]
    assert clock.getDelayedCalls() == []


def test_a_reload_keeps_the_next_run_of_an_unchanged_task() -> None:
    """Reloads more frequent than a task's interval do not postpone it; a new interval does."""
    clock = task.Clock()
    host = PluginHost(clock=clock)
    lifecycle = PluginLifecycle(host)
    runs: list[float] = []

    def load(seconds: float) -> None:
        work = every(seconds, name="work")(lambda: runs.append(clock.seconds()))
        lifecycle.activate(lifecycle.prepare(_set("slowpoke", plugin_module("s", w=work), host)))

    load(100)
    for _ in range(9):
        clock.advance(10)
        load(100)  # a reload every 10 s
    clock.advance(10)
    assert runs == [100]
    load(50)  # the interval changed: counted from this reload
    assert lifecycle.scheduler.next_run("slowpoke", "work") == 150
    lifecycle.stop()


def test_stop_waits_for_runs_in_progress() -> None:
    """Stopping fires once the running task has finished."""
    clock = task.Clock()
    host = PluginHost(clock=clock)
    lifecycle = PluginLifecycle(host)
    gate: defer.Deferred[None] = defer.Deferred()
    module = plugin_module("gate", wait=every(1, name="wait")(lambda: gate))
    lifecycle.activate(lifecycle.prepare(_set("gate", module, host)))
    clock.advance(1)
    stopped = lifecycle.stop()
    assert not stopped.called
    gate.callback(None)
    assert stopped.called


def test_the_tally_report_task_writes_its_table(tmp_path: Path) -> None:
    """A plugin's task uses its key-value store and tables, driven by the fake clock."""
    harness = PluginHarness(
        tally, {"report_seconds": 30}, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"
    )
    try:
        harness.result(harness.kv.increment("messages", 4))
        harness.advance(30)
        harness.advance(30)  # nothing new: no second report
        rows = harness.result(
            harness.context.transaction(lambda c: c.execute(sa.select(tally.reports)).all())
        )
        assert [(r.messages, r.label) for r in rows] == [(4, "tally")]
        assert harness.metrics()["gauges"] == {"tally.reported": 4}
        harness.advance(3 * 3600)
        assert harness.result(harness.kv.get("nightly")) == 3 * 3600
        harness.run_task("report")
        assert harness.metrics()["counters"]["tally.task.report.runs"] >= 2
    finally:
        harness.close()


def test_a_task_reads_each_domains_settings_with_settings_for() -> None:
    """A task that takes ``settings_for`` gets a domain's effective settings and switch, so its
    plugin may declare the domain and user scopes; without it, those scopes are refused."""

    class Settings(PluginSettings):
        days: int = Field(0, description="Days.")

    seen: list[tuple[bool, int]] = []

    @every(60)
    def sweep(settings_for):
        for domain in ("a.test", "b.test", "c.test"):
            enabled, config = settings_for(Scope(domain=domain))
            seen.append((enabled, config.days))

    module = plugin_module("sweeper", sweep=sweep, Settings=Settings, SCOPES=("system", "domain"))
    overrides = {Scope(domain="a.test"): {"days": 30}, Scope(domain="b.test"): {"enabled": False}}
    harness = PluginHarness(module, {"days": 7}, overrides=overrides)
    harness.advance(60)
    assert seen == [(True, 30), (False, 7), (True, 7)]

    @every(60)
    def blind(config):
        return None

    with pytest.raises(PluginError, match="declares the domain scope"):
        PluginHarness(plugin_module("blind", blind=blind, SCOPES=("system", "domain")))
