"""Scheduled work of plugins: periodic tasks run on the reactor's clock.

A plugin marks module-level functions with :func:`every` (an interval) or :func:`daily` (a time
of day). :func:`plan` finds and checks them for a plugin set; :class:`Scheduler` runs them:

- times come from the clock it is given (the reactor; a ``twisted.internet.task.Clock`` in
  tests), never from sleeping;
- a task is never run twice at once: a run due while the previous one (of the same plugin and
  task, in this or the plugin set before a reload) is still going is skipped and counted;
- a task that raises or fails its Deferred is logged and counted; its schedule goes on;
- :meth:`Scheduler.replace` stops the old plugin set's timers and starts the new set's (a
  reload); runs in progress finish with the set they started with.

A task takes, by name, any of ``host`` (the :class:`PluginHost`), ``config`` (the plugin's
system settings), ``context`` (its :class:`~mailmax.core.pluginhost.services.PluginContext`)
and ``settings_for`` (``settings_for(scope)`` gives ``(enabled, settings)`` of the plugin for
a :class:`~mailmax.core.hooks.Scope`, such as one domain, as a hook there would get them), and
may return a Deferred or be a coroutine function. A plugin with a task that takes
``settings_for`` may be configured per domain and per user.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from datetime import time as time_of_day
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.hooks import CURRENT_HOST, PluginError

log = Logger(namespace="mailmax.plugins")

#: Shortest interval a task may have, in seconds.
MIN_INTERVAL = 0.05
#: The attribute :func:`every` and :func:`daily` put on a task function.
MARK = "__mailmax_schedule__"
#: Arguments a task function may take.
TASK_ARGUMENTS = ("host", "config", "context", "settings_for")
#: Where a plugin whose task takes ``settings_for`` can be configured.
SCOPED_TASK_SCOPES = frozenset({"system", "domain", "user"})

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_SETTING = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Every:
    """Run every ``seconds`` (a number, or the name of a numeric setting of the plugin)."""

    seconds: float | str
    name: str = ""


@dataclass(frozen=True)
class Daily:
    """Run once a day at ``at`` (``HH:MM``, or the name of a setting that holds it) in the
    time zone ``tz`` (empty: the server's own)."""

    at: str
    tz: str = "UTC"
    name: str = ""


def every(seconds: float | str, *, name: str = "") -> Callable[[Callable], Callable]:
    """Mark a plugin function as a task run every ``seconds`` seconds.

    ``seconds`` may name a numeric setting instead (``every("flush_seconds")``), read from the
    plugin's system settings at each load and reload. The first run is one interval after the
    plugin set starts.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float | str):
        raise TypeError(f"every() takes seconds or a setting name, not {seconds!r}")
    if not isinstance(seconds, str) and seconds < MIN_INTERVAL:
        raise ValueError(f"every(): the interval must be at least {MIN_INTERVAL}s, not {seconds}")
    return _mark(Every(seconds, name))


def daily(at: str, *, tz: str = "UTC", name: str = "") -> Callable[[Callable], Callable]:
    """Mark a plugin function as a task run once a day at ``at`` (``"03:30"``) in ``tz``
    (an IANA time zone name such as ``"Europe/Paris"``; default UTC; ``""``: the server's own
    time zone).

    ``at`` may name a setting instead (``daily("run_at")``) that holds the time as HH:MM, read
    from the plugin's system settings at each load and reload.
    """
    if not isinstance(at, str) or not (_TIME.match(at) or _SETTING.match(at)):
        raise ValueError(f"daily(): the time is HH:MM (00:00 to 23:59) or a setting, not {at!r}")
    if tz:
        _zone(tz)
    return _mark(Daily(at, tz, name))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"daily(): unknown time zone {tz!r}") from None


def _mark(spec: Every | Daily) -> Callable[[Callable], Callable]:
    def decorate(function: Callable) -> Callable:
        unknown = [p for p in inspect.signature(function).parameters if p not in TASK_ARGUMENTS]
        if unknown:
            raise TypeError(
                f"scheduled task {function.__name__}: unknown arguments {', '.join(unknown)}; "
                f"a task takes any of {', '.join(TASK_ARGUMENTS)}"
            )
        setattr(function, MARK, spec)
        return function

    return decorate


@dataclass(frozen=True)
class PlannedTask:
    """One task of one plugin, checked and ready to run."""

    plugin: str
    name: str
    function: Callable[..., Any]
    spec: Every | Daily
    interval: float
    config: Any
    arguments: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the task across reloads."""
        return (self.plugin, self.name)

    def describe(self) -> str:
        """``every 60s`` or ``daily at 03:00 UTC``."""
        if isinstance(self.spec, Daily):
            return f"daily at {self.spec.at} {self.spec.tz or '(server time)'}"
        return f"every {self.interval:g}s"


def _interval(plugin: Any, function: Callable, spec: Every) -> float:
    seconds = spec.seconds
    if isinstance(seconds, str):
        value = plugin.settings.get(seconds) if hasattr(plugin.settings, "get") else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PluginError(
                f"plugin {plugin.name!r}: task {function.__name__} runs every {seconds!r}, "
                f"but that setting is {value!r}, not a number of seconds"
            )
        seconds = value
    if seconds < MIN_INTERVAL:
        raise PluginError(
            f"plugin {plugin.name!r}: task {function.__name__}: the interval must be at least "
            f"{MIN_INTERVAL}s, not {seconds}"
        )
    return float(seconds)


def _time_of_day(plugin: Any, function: Callable, spec: Daily) -> Daily:
    """``spec`` with the time of day its setting holds (``spec`` itself when it gives one)."""
    if _TIME.match(spec.at):
        return spec
    value = plugin.settings.get(spec.at) if hasattr(plugin.settings, "get") else None
    if not isinstance(value, str) or not _TIME.match(value):
        raise PluginError(
            f"plugin {plugin.name!r}: task {function.__name__} runs daily at {spec.at!r}, "
            f"but that setting is {value!r}, not a time of day as HH:MM (00:00 to 23:59)"
        )
    return replace(spec, at=value)


def tasks_of(plugin: Any) -> list[PlannedTask]:
    """The scheduled tasks a loaded plugin declares, checked (PluginError if one is bad)."""
    module = plugin.module
    members = (
        vars(module).values()
        if inspect.ismodule(module)
        else (getattr(module, n, None) for n in dir(module))
    )
    found: list[PlannedTask] = []
    seen: set[str] = set()
    for member in members:
        spec = getattr(member, MARK, None) if callable(member) else None
        if spec is None:
            continue
        name = spec.name or member.__name__
        if not _TASK_NAME.match(name):
            raise PluginError(
                f"plugin {plugin.name!r}: task name {name!r}: use lower-case letters, digits, "
                "_ and - (give name= to every() or daily())"
            )
        if name in seen:
            continue  # the same function under two names
        seen.add(name)
        if isinstance(spec, Daily):
            spec, interval = _time_of_day(plugin, member, spec), 86400.0
        else:
            interval = _interval(plugin, member, spec)
        arguments = tuple(inspect.signature(member).parameters)
        found.append(
            PlannedTask(plugin.name, name, member, spec, interval, plugin.settings, arguments)
        )
    return sorted(found, key=lambda t: t.name)


def takes_scopes(plugin_object: Any) -> bool:
    """True when one of the plugin's scheduled tasks takes ``settings_for``."""
    members = (
        vars(plugin_object).values()
        if inspect.ismodule(plugin_object)
        else (getattr(plugin_object, n, None) for n in dir(plugin_object))
    )
    return any(
        callable(member)
        and getattr(member, MARK, None) is not None
        and "settings_for" in inspect.signature(member).parameters
        for member in members
    )


def plan(plugins: Iterable[Any]) -> list[PlannedTask]:
    """Every task of ``plugins`` (the loaded plugins of a set), checked."""
    tasks: list[PlannedTask] = []
    problems: list[str] = []
    for plugin in plugins:
        try:
            tasks.extend(tasks_of(plugin))
        except PluginError as exc:
            problems.append(str(exc))
    if problems:
        raise PluginError("\n".join(problems))
    return tasks


def next_daily(now: float, spec: Daily) -> float:
    """The first time after ``now`` (Unix seconds) that is ``spec.at`` in ``spec.tz``."""
    zone = _zone(spec.tz) if spec.tz else None  # None: the server's time zone
    hour, minute = (int(part) for part in spec.at.split(":"))
    day = datetime.fromtimestamp(now, zone).date()
    for _ in range(3):
        candidate = datetime.combine(day, time_of_day(hour, minute), zone).timestamp()
        if candidate > now:
            return candidate
        day += timedelta(days=1)
    raise AssertionError("unreachable: a day ahead always has the time")


class Scheduler:
    """Runs the planned tasks of the current plugin set on ``clock`` (see the module doc).

    ``arguments(task)`` gives the keyword arguments a task may take (``host``, ``context``...);
    ``count(plugin, name)`` records ``runs``, ``failures`` and ``skipped`` in the metrics.
    """

    def __init__(
        self,
        clock: Any,
        *,
        host: Any = None,
        arguments: Callable[[PlannedTask], dict[str, Any]] | None = None,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.host = host
        self._arguments = arguments or (lambda task: {"config": task.config})
        self._count = count or (lambda plugin, name: None)
        self._tasks: list[PlannedTask] = []
        self._calls: dict[tuple[str, str], Any] = {}
        self._running: dict[tuple[str, str], defer.Deferred[None]] = {}

    @property
    def tasks(self) -> list[PlannedTask]:
        """The tasks now scheduled."""
        return list(self._tasks)

    def next_run(self, plugin: str, name: str) -> float | None:
        """When the task runs next (clock seconds), or None when it is not scheduled."""
        call = self._calls.get((plugin, name))
        return call.getTime() if call is not None and call.active() else None

    def replace(self, tasks: Iterable[PlannedTask]) -> None:
        """Stop the timers of the tasks scheduled now and schedule ``tasks`` instead.

        A task that keeps its schedule (same plugin, name and timing) keeps its next run, so
        frequent reloads never postpone a long-interval task for ever.
        """
        before = {
            task.key: (task.describe(), self._calls[task.key].getTime())
            for task in self._tasks
            if task.key in self._calls and self._calls[task.key].active()
        }
        self._cancel()
        self._tasks = list(tasks)
        now = self.clock.seconds()
        for task in self._tasks:
            kept = before.get(task.key)
            if kept is not None and kept[0] == task.describe():
                self._calls[task.key] = self.clock.callLater(
                    max(kept[1] - now, 0), self._due, task, kept[1]
                )
                continue
            self._schedule(task)
            log.info(
                "plugin {plugin}: task {name} scheduled {when}",
                plugin=task.plugin,
                name=task.name,
                when=task.describe(),
            )

    def stop(self) -> defer.Deferred[None]:
        """Stop every timer; the Deferred fires once the runs in progress have finished."""
        self._cancel()
        self._tasks = []
        waits = []
        for running in self._running.values():
            wait: defer.Deferred[None] = defer.Deferred()
            running.addBoth(lambda _, w=wait: None if w.called else w.callback(None))
            waits.append(wait)
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def _cancel(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    def _schedule(self, task: PlannedTask, due: float | None = None) -> None:
        """Set the timer of ``task``'s next run: after ``due`` (the run that fell due), on
        the task's own cadence; runs missed while the clock jumped are not made up."""
        now = self.clock.seconds()
        if isinstance(task.spec, Daily):
            at = next_daily(now, task.spec)
        elif due is None:
            at = now + task.interval
        else:
            at = due + (int((now - due) // task.interval) + 1) * task.interval
        self._calls[task.key] = self.clock.callLater(at - now, self._due, task, at)

    def _due(self, task: PlannedTask, due: float) -> None:
        self._schedule(task, due)  # the schedule goes on whatever this run does
        if task.key in self._running:
            log.warn(
                "plugin {plugin}: task {name} is still running; this run is skipped",
                plugin=task.plugin,
                name=task.name,
            )
            self._count(task.plugin, f"task.{task.name}.skipped")
            return
        self.run_now(task)

    def run_now(self, task: PlannedTask) -> defer.Deferred[None]:
        """Run ``task`` once now (unless it is running); fires when it has finished."""
        if task.key in self._running:
            return self._running[task.key]
        available = self._arguments(task)
        kwargs = {name: available[name] for name in task.arguments if name in available}
        token = CURRENT_HOST.set(self.host)
        try:
            d = defer.maybeDeferred(task.function, **kwargs)  # coroutines too
        finally:
            CURRENT_HOST.reset(token)
        done: defer.Deferred[None] = defer.Deferred()
        self._running[task.key] = done
        self._count(task.plugin, f"task.{task.name}.runs")
        d.addErrback(self._failed, task)
        d.addBoth(self._finished, task, done)
        return done

    def _failed(self, failure: Any, task: PlannedTask) -> None:
        self._count(task.plugin, f"task.{task.name}.failures")
        log.failure(
            "plugin {plugin}: task {name} failed; it runs again at its next time",
            failure,
            plugin=task.plugin,
            name=task.name,
        )

    def _finished(self, _: Any, task: PlannedTask, done: defer.Deferred[None]) -> None:
        if self._running.get(task.key) is done:
            del self._running[task.key]
        if not done.called:  # a waiter may have given up on it (cancelled)
            done.callback(None)
