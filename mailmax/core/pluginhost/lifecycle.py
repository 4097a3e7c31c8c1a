"""Bringing a plugin set's data and scheduled work up, and taking the old set's down.

Used the same way by the server (:class:`~mailmax.core.pluginhost.runtime.PluginRuntime`, at
start and at every reload) and by :class:`mailmax.testing.PluginHarness`:

1. :meth:`PluginLifecycle.prepare` (before the new set serves): check every plugin's
   ``TABLES`` and scheduled tasks and run its table migrations; raises
   :class:`~mailmax.core.hooks.PluginError` saying why, and the old set keeps serving;
2. :meth:`PluginLifecycle.activate` (once the set is swapped in): the old set's timers stop,
   the new set's start;
3. :meth:`PluginLifecycle.stop` (server shutdown): timers stop, runs in progress finish.

The host also schedules its own upkeep here: expired key-value entries are purged every
:data:`PURGE_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from twisted.internet import defer

from mailmax.core.hooks import PluginError, PluginSet
from mailmax.core.pluginhost import schedule, storage
from mailmax.core.pluginhost.storage import PluginTables

#: Seconds between two purges of expired key-value entries.
PURGE_SECONDS = 60.0
#: The name the host's own tasks and metrics go under.
HOST_NAME = "mailmax"


@dataclass
class Prepared:
    """A plugin set checked and migrated, ready to be activated."""

    plugin_set: PluginSet
    tables: dict[str, PluginTables] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    tasks: list[schedule.PlannedTask] = field(default_factory=list)


def _purge(host: Any) -> defer.Deferred[int]:
    engine = host._sync().engine
    return host._in_thread(storage.kv_purge, engine, host.clock.seconds())


def check(plugin_set: PluginSet) -> list[str]:
    """What :meth:`PluginLifecycle.prepare` would refuse in ``plugin_set`` short of running
    migrations: bad ``TABLES`` declarations and scheduled tasks (empty when all is well)."""
    problems: list[str] = []
    for plugin in plugin_set.plugins:
        try:
            storage.tables_of(plugin.name, plugin.module)
        except PluginError as exc:
            problems.append(str(exc))
    try:
        schedule.plan(plugin_set.plugins)
    except PluginError as exc:
        problems.extend(str(exc).splitlines())
    return problems


class PluginLifecycle:
    """Tables, key-value upkeep and schedules of the current plugin set of one host."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.scheduler = schedule.Scheduler(
            host.clock, host=host, arguments=self._arguments, count=self._count
        )
        self._plugin_set: PluginSet | None = None

    def _arguments(self, task: schedule.PlannedTask) -> dict[str, Any]:
        return {
            "host": self.host,
            "config": task.config,
            "context": self.host.for_plugin(task.plugin),
            "settings_for": partial(self._settings_for, self._plugin_set, task.plugin),
        }

    @staticmethod
    def _settings_for(plugin_set: PluginSet | None, name: str, scope: Any) -> tuple[bool, Any]:
        """``(enabled, settings)`` of the plugin ``name`` in ``scope``, in ``plugin_set``."""
        plugin = plugin_set.get(name) if plugin_set is not None else None
        if plugin is None:
            raise PluginError(f"plugin {name!r} is not in the current plugin set")
        return plugin_set.resolve(plugin, scope)

    def _count(self, plugin: str, name: str) -> None:
        self.host.metrics.increment(f"{plugin.lower()}.{name}")

    def prepare(self, plugin_set: PluginSet) -> Prepared:
        """Check ``plugin_set``'s tables and tasks and migrate its tables (PluginError if bad)."""
        prepared = Prepared(plugin_set)
        problems: list[str] = []
        directory = self.host.sync_directory
        for plugin in plugin_set.plugins:
            try:
                tables = storage.tables_of(plugin.name, plugin.module)
            except PluginError as exc:
                problems.append(str(exc))
                continue
            if tables is not None and directory is None:
                problems.append(f"plugin {plugin.name!r} declares tables but there is no directory")
            elif tables is not None:
                prepared.tables[plugin.name] = tables
        try:
            prepared.tasks = schedule.plan(plugin_set.plugins)
        except PluginError as exc:
            problems.append(str(exc))
        if not problems:  # migrate only a set that is otherwise sound
            for plugin in plugin_set.plugins:
                if plugin.name in prepared.tables:
                    try:
                        prepared.versions[plugin.name] = self._migrate(
                            directory, plugin, prepared.tables[plugin.name]
                        )
                    except PluginError as exc:
                        problems.append(str(exc))
        if problems:
            raise PluginError("\n".join(problems))
        return prepared

    def _migrate(self, directory: Any, plugin: Any, tables: PluginTables) -> str:
        try:
            return storage.migrate_tables(directory.engine, plugin.name, plugin.module, tables)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin.name!r}: migrating its tables failed: "
                f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"
            ) from exc

    def host_tasks(self) -> list[schedule.PlannedTask]:
        """The host's own upkeep tasks (the key-value purge, when there is a directory)."""
        if self.host.sync_directory is None:
            return []
        spec = schedule.Every(PURGE_SECONDS, "kv-purge")
        purge = schedule.PlannedTask(
            HOST_NAME, "kv-purge", _purge, spec, PURGE_SECONDS, None, ("host",)
        )
        return [purge]

    def activate(self, prepared: Prepared) -> None:
        """Make ``prepared`` current: its tables known to the host, its tasks scheduled."""
        self.host.declare_tables(prepared.tables)
        self._plugin_set = prepared.plugin_set
        self.scheduler.replace([*self.host_tasks(), *prepared.tasks])

    def stop(self) -> defer.Deferred[None]:
        """Stop every timer; fires once the task runs in progress have finished."""
        return self.scheduler.stop()
