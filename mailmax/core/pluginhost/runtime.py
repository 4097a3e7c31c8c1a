"""The plugin platform of one running service: the current set, its host, reloads, refreshes.

:class:`PluginRuntime` holds the plugin set new sessions and deliveries take
(:attr:`plugin_set`), swaps in a new one on :meth:`reload` (or keeps the old one and raises
:class:`~mailmax.core.hooks.PluginError`), re-reads the directory's plugin overrides every
``[server] directory_cache_seconds`` in a thread, and serves the local admin channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from mailmax.core import admin
from mailmax.core import config as config_mod
from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.pluginhost import reload as builder
from mailmax.core.pluginhost.host import PluginHost
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
        )
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
    ) -> None:
        """Attach the directory and spool, rebuild the set with the directory's overrides,
        start refreshing them and open the admin channel (``reload`` answers its reloads,
        ``admin_commands`` adds commands without and with an argument)."""
        self.host.sync_directory = directory
        self.host.directory = async_directory
        self.host.spool = spool
        self.overrides.directory = directory
        self.plugin_set = builder.build(self.settings, source=self.overrides, host=self.host)
        interval = max(self.settings.server.directory_cache_seconds, MIN_REFRESH_SECONDS)
        self._refresh = task.LoopingCall(self._refresh_overrides, async_directory)
        self._refresh.clock = self.reactor
        self._refresh.start(interval, now=False)
        factory = admin.AdminFactory(
            {
                "reload": reload,
                "plugins": lambda: admin.plugins_summary(self.plugin_set),
                "ping": lambda: "pong",
                **admin_commands[0],
            },
            admin_commands[1],
        )
        d = admin.listen(self.reactor, self.settings.data_dir, factory)
        d.addCallback(self._admin_listening)
        d.addErrback(lambda f: log.error("admin channel not available: {e}", e=f.getErrorMessage()))

    def _admin_listening(self, port: Any) -> None:
        self._admin_port = port
        log.info("admin channel on {path}", path=str(admin.socket_path(self.settings.data_dir)))

    def stop(self) -> defer.Deferred[None]:
        """Stop refreshing and close the admin channel."""
        if self._refresh is not None and self._refresh.running:
            self._refresh.stop()
        port, self._admin_port = self._admin_port, None
        if port is None:
            return defer.succeed(None)
        d = defer.maybeDeferred(port.stopListening)
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
    def reload(self) -> PluginSet:
        """Re-read the config file, re-import every plugin and swap the set atomically.

        Raises :class:`PluginError` (or ConfigError) saying why, and changes nothing, when the
        configuration, a plugin's code or a setting is bad.
        """
        source = self.settings.source
        new_settings = config_mod.load(source) if source else self.settings
        new_set = builder.build(new_settings, source=self.overrides, host=self.host, fresh=True)
        self.plugin_set = new_set
        self.settings = new_settings
        self.host.clear_cache()
        return new_set
