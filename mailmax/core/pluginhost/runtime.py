"""The plugin platform of one running service: the current set, its host, reloads, refreshes.

:class:`PluginRuntime` holds the plugin set new sessions and deliveries take
(:attr:`plugin_set`), builds a new one for a reload (:meth:`build`, which raises
:class:`~mailmax.core.hooks.PluginError` and changes nothing when a plugin is bad) and swaps
it in (:meth:`use`), re-reads the directory's plugin overrides every
``[server] directory_cache_seconds`` in a thread, and serves the local admin channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from mailmax.core import admin
from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.pluginhost import reload as builder
from mailmax.core.pluginhost.host import PluginHost
from mailmax.core.pluginhost.lifecycle import PluginLifecycle, Prepared
from mailmax.core.pluginhost.scopes import OverrideSource

log = Logger(namespace="mailmax.plugins")

#: Shortest pause between two reads of the directory's plugin overrides.
MIN_REFRESH_SECONDS = 0.25


class PluginRuntime:
    """The plugin set of a service and everything that keeps it current."""

    def __init__(self, settings: Settings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.overrides = OverrideSource()
        self.host = PluginHost(
            hostname=settings.server.hostname,
            data_dir=settings.data_dir,
            reactor=reactor,
            cache_seconds=settings.server.directory_cache_seconds,
            settings=settings,
        )
        #: The current set's tables and scheduled tasks.
        self.lifecycle = PluginLifecycle(self.host)
        #: The set new sessions and deliveries start with; replaced whole, never changed.
        self.plugin_set: PluginSet = builder.build(settings, source=self.overrides, host=self.host)
        self._refresh: task.LoopingCall | None = None
        self._refreshing = False
        self._admin_port: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(
        self,
        *,
        directory: Any,
        async_directory: Any,
        spool: Any,
        reload: Callable[[], Any],
        admin_commands: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
        admin_streams: dict[str, Any] | None = None,
    ) -> None:
        """Attach the directory and spool, rebuild the set with the directory's overrides,
        start refreshing them and open the admin channel (``reload`` answers its reloads,
        ``admin_commands`` adds commands without and with an argument, ``admin_streams``
        stream commands)."""
        self.host.sync_directory = directory
        self.host.directory = async_directory
        self.host.spool = spool
        self.overrides.directory = directory
        self.plugin_set = builder.build(self.settings, source=self.overrides, host=self.host)
        self.lifecycle.activate(self.lifecycle.prepare(self.plugin_set))
        interval = max(self.settings.server.directory_cache_seconds, MIN_REFRESH_SECONDS)
        self._refresh = task.LoopingCall(self._refresh_overrides, async_directory)
        self._refresh.clock = self.reactor
        self._refresh.start(interval, now=False)
        factory = admin.AdminFactory(
            {
                "reload": reload,
                "plugins": lambda: admin.plugins_summary(self.plugin_set),
                "ping": lambda: "pong",
                "metrics": lambda: json.dumps(self.host.metrics.snapshot()),
                **admin_commands[0],
            },
            {"plugin-command": self.plugin_command, **admin_commands[1]},
            admin_streams,
        )
        d = admin.listen(self.reactor, self.settings.data_dir, factory)
        d.addCallback(self._admin_listening)
        d.addErrback(lambda f: log.error("admin channel not available: {e}", e=f.getErrorMessage()))

    def plugin_command(self, argument: str) -> Any:
        """Answer ``plugin-command NAME ACTION`` on the admin channel: call the loaded plugin's
        ``ADMIN_COMMANDS[ACTION](context, config)`` (its :class:`PluginContext` and system
        settings), which returns the answer text or a Deferred of it."""
        name, _, action = argument.partition(" ")
        action = action.strip()
        plugin = next((p for p in self.plugin_set.plugins if p.name == name), None)
        if plugin is None:
            raise admin.AdminError(
                f"plugin {name} is not loaded in the running server; switch it on "
                f"(`mailmax plugin enable {name}`) and run `mailmax reload`"
            )
        commands = getattr(plugin.module, "ADMIN_COMMANDS", None) or {}
        if action not in commands:
            known = ", ".join(commands) or "none"
            raise admin.AdminError(
                f"plugin {name} has no admin command {action!r} (known: {known})"
            )
        return defer.maybeDeferred(
            commands[action], self.host.for_plugin(name), plugin.settings
        ).addErrback(self._plugin_command_failed, name, action)

    @staticmethod
    def _plugin_command_failed(failure: Any, name: str, action: str) -> None:
        if failure.check(admin.AdminError):
            failure.raiseException()
        log.failure(
            "admin command {action} of plugin {name} failed", failure, action=action, name=name
        )
        raise admin.AdminError(f"{name} {action} failed: {failure.getErrorMessage()}")

    def _admin_listening(self, port: Any) -> None:
        self._admin_port = port
        log.info("admin channel on {path}", path=str(admin.socket_path(self.settings.data_dir)))

    def stop(self) -> defer.Deferred[None]:
        """Stop refreshing and the scheduled tasks (letting runs finish); close the admin
        channel."""
        if self._refresh is not None and self._refresh.running:
            self._refresh.stop()
        grace = self.settings.server.shutdown_grace_seconds
        tasks_done = self.lifecycle.stop().addTimeout(max(grace, 0.1), self.reactor)
        tasks_done.addErrback(
            lambda f: log.warn("scheduled tasks still running at shutdown: {e}", e=f.value)
        )
        port, self._admin_port = self._admin_port, None
        if port is None:
            return tasks_done
        d = tasks_done.addCallback(lambda _: port.stopListening())
        d.addBoth(lambda _: admin.socket_path(self.settings.data_dir).unlink(missing_ok=True))
        return d

    def _refresh_overrides(self, async_directory: Any) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        d = async_directory.run(self.overrides.refresh)
        d.addCallback(self._refreshed)
        d.addErrback(lambda f: log.warn("plugin overrides not re-read: {e}", e=f.getErrorMessage()))
        d.addBoth(self._refresh_done)

    def _refreshed(self, changed: bool) -> None:
        if not changed:
            return
        loaded = {p.name for p in self.plugin_set.plugins}
        missing = [n for n in self.overrides.enabled_somewhere() if n not in loaded]
        if missing:
            log.warn(
                "plugins {names} are switched on for some domains or users but not loaded; "
                "run `mailmax reload` to load them",
                names=", ".join(missing),
            )

    def _refresh_done(self, _: Any) -> None:
        self._refreshing = False

    # ------------------------------------------------------------------ reload
    def build(self, settings: Settings) -> Prepared:
        """A plugin set for ``settings``, every plugin's code imported afresh, its tables
        migrated and its tasks planned; the running set stays until :meth:`use`. Raises
        :class:`PluginError` saying why when a plugin switched on anywhere (system, listener,
        domain or user) cannot load, refuses its settings, or has bad tables or tasks."""
        new_set = builder.build(settings, source=self.overrides, host=self.host, fresh=True)
        return self.lifecycle.prepare(new_set)

    def use(self, prepared: Prepared, settings: Settings) -> None:
        """Swap in the plugin set of ``prepared`` (from :meth:`build` for ``settings``) at once,
        with its scheduled tasks."""
        self.plugin_set = prepared.plugin_set
        self.settings = settings
        self.host.use_settings(settings)
        self.host.clear_cache()
        self.lifecycle.activate(prepared)
