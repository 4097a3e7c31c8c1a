"""The MailMax service: one Twisted MultiService holding every part of a running server.

Start order: log file, directory, spool, plugin set, queue runner, then the listeners (so no
client is accepted before everything it needs is ready). Stop order is the reverse, with a grace
period for transactions in flight. A reload (SIGHUP, ``mailmax reload``, the admin channel)
re-reads the file, checks everything it needs, then applies the keys that can change live to
the parts already running and swaps the plugin set (:meth:`MailMaxService.reload`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from mailmax.core import admin, configdiff, heap
from mailmax.core import config as config_mod
from mailmax.core.auditprune import AuditPruner
from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.cluster.nodes import Cluster
from mailmax.core.config import IMPLICIT_TLS_SERVICES, SMTP_SERVICES, ListenerSettings, Settings
from mailmax.core.credentials import MailPortal, plugin_checkers
from mailmax.core.directory.api import BlankPasswordPolicy
from mailmax.core.directory.cached import AsyncDirectory
from mailmax.core.directory.mixed import Directory, build_ldap_sources
from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.hooks import PluginError, PluginSet
from mailmax.core.logfile import MailLogFile
from mailmax.core.net.limits import ConnectionLimiter
from mailmax.core.observe.hub import Observability
from mailmax.core.pluginhost.runtime import PluginRuntime
from mailmax.core.queue.runner import QueueRunner
from mailmax.core.smtp.factory import PluginSMTPFactory
from mailmax.core.spool.spool import Spool
from mailmax.core.tls import (
    ReloadableServerOptions,
    TLSConfigError,
    listener_options,
    server_options,
)

log = Logger(namespace="mailmax.service")


class ReloadError(Exception):
    """A reload was refused; the running configuration is unchanged."""


class MailMaxService(service.MultiService):
    """Everything one ``twistd mailmax`` process runs."""

    def __init__(self, settings: Settings, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.settings = settings
        self.directory: SQLDirectory | None = None
        self.async_directory: AsyncDirectory | None = None
        self.audit_pruner: AuditPruner | None = None
        self.spool: Spool | None = None
        self.queue: QueueRunner | None = None
        #: Plugin set, its host, reloads and the admin channel (raises PluginError when bad).
        self.plugins = PluginRuntime(settings, reactor)
        self.ports: list[tuple[ListenerSettings, IListeningPort]] = []
        self.factories: list[Any] = []
        #: Failed-login counters and recent POP3/IMAP log-ins, shared by every protocol.
        self.authlimit = AuthLimiter.from_settings(settings)
        self.logins = RecentLogins()
        #: Per-IP connection limits, shared by every listener (counted per service).
        self.limiter = ConnectionLimiter.from_settings(settings.connections, self.reactor)
        #: The twisted.cred portal of every log-in; a .tac file may add checkers to it.
        self.portal = MailPortal(None, plugin_checkers(self.current_plugins))
        self._logfile: MailLogFile | None = None
        #: Events (logs, traces), activity counters and metrics.
        self.observe = Observability(
            settings,
            reactor,
            metrics=lambda: self.plugins.host.metrics,
            sessions=self.sessions_open,
            queue=self.queue_counts,
        )
        self.plugins.host.event_bus = self.observe.bus
        #: Per listener, the TLS options a reload can swap (None: no certificate).
        self._tls: list[ReloadableServerOptions | None] = []
        self._previous_sighup: Any = None
        #: This node's cluster (``[cluster]``), or None outside a cluster.
        self.cluster = Cluster.from_settings(settings)
        #: The HTTPS admin API (``[admin] enabled``) and its listening port.
        self.api: Any = None
        self.api_port: IListeningPort | None = None

    # ------------------------------------------------------------------ plugins
    @property
    def plugin_set(self) -> PluginSet:
        """The plugin set new sessions and deliveries start with."""
        return self.plugins.plugin_set

    def current_plugins(self) -> PluginSet:
        """The plugin set new sessions and deliveries start with."""
        return self.plugins.plugin_set

    def reload(self) -> configdiff.ReloadReport:
        """Re-read the config file, apply what can change live and swap in a freshly built
        plugin set; or change nothing and raise :class:`ReloadError` saying why.

        Everything that can fail (the file, TLS files, every plugin switched on anywhere, the
        log file) is checked before anything changes. Keys that only a restart applies keep
        their running values and are named in the report. The log file is reopened either way
        (a refused reload after a log rotation still writes its reason to the new file).
        """
        try:
            report = self._reload()
        except (config_mod.ConfigError, PluginError, TLSConfigError, OSError) as exc:
            with contextlib.suppress(OSError):  # the reason below still reaches twistd's log
                self._reopen_log(self.settings)
            log.error("reload refused, nothing changed: {error}", error=str(exc))
            raise ReloadError(str(exc)) from exc
        emit = log.warn if report.restart else log.info
        emit("{report}", report="\n".join(report.lines()))
        return report

    def _reload(self) -> configdiff.ReloadReport:
        source = self.settings.source
        new = config_mod.load(source) if source else self.settings
        difference = configdiff.compare(self.settings, new)
        effective = difference.effective
        tls_options = listener_options(effective)
        AuthLimiter.from_settings(effective)  # refuses bad [auth] values before any change
        prepared = self.plugins.build(effective)
        self.observe.check(effective)
        self._reopen_log(effective)
        self.plugins.use(prepared, effective)
        self._apply(effective, tls_options)
        self.observe.reconfigure(effective)
        return configdiff.ReloadReport(
            plugins=[p.name for p in prepared.plugin_set.plugins],
            applied=difference.applied,
            restart=difference.restart,
        )

    def _reopen_log(self, settings: Settings) -> None:
        """Reopen the log file (after a rotation), at its new path when that changed."""
        wanted = settings.path(settings.server.log_file) if settings.server.log_file else None
        if self._logfile is not None and wanted is not None:
            self._logfile.reopen(wanted)
        elif wanted is not None:
            self._logfile = MailLogFile(wanted)
            self._logfile.start()
        elif self._logfile is not None:
            self._logfile.stop()
            self._logfile = None

    def _apply(self, settings: Settings, tls_options: list[Any]) -> None:
        """Make ``settings`` the configuration of new sessions, deliveries and log-ins."""
        from mailmax.core.imap.auth import IMAPLimits
        from mailmax.core.imap.factory import IMAPFactory

        self.settings = settings
        for index, factory in enumerate(self.factories):
            factory.settings = settings
            factory.listener = settings.listeners[index]
            factory.tls_options = self._tls_holder(index, tls_options[index])
            if isinstance(factory, IMAPFactory):
                factory.limits = IMAPLimits.from_settings(settings)
        self.authlimit.reconfigure(settings)
        self.limiter.reconfigure(settings.connections)
        if self.cluster is not None:  # the keys that may change live (see ClusterSettings)
            self.cluster.settings = settings.cluster
        if self.directory is not None:
            self.directory.login_cache.seconds = settings.auth.cache_seconds
            self.directory.blank_password_default = BlankPasswordPolicy(
                settings.server.blank_password
            )
        if self.queue is not None:
            self.queue.reconfigure(settings)
        if self.api is not None:
            self.api.auth.reconfigure(settings)
        if self.audit_pruner is not None:
            self.audit_pruner.run_once()

    def sessions_open(self) -> dict[str, int]:
        """Client sessions open now, per service."""
        counts: dict[str, int] = {}
        for factory in self.factories:
            service = factory.listener.service
            counts[service] = counts.get(service, 0) + len(factory.sessions)
        return counts

    def queue_counts(self) -> dict[str, int]:
        """Queued messages by state: being delivered now, and waiting for a retry."""
        if self.queue is None:
            return {}
        return self.queue.counts()

    def _tls_holder(self, index: int, options: Any) -> ReloadableServerOptions | None:
        """The swappable TLS options of listener ``index`` now using ``options`` (None: none)."""
        if options is None:
            return None
        holder = self._tls[index]
        if holder is None:
            holder = self._tls[index] = ReloadableServerOptions(options)
        holder.options = options
        return holder

    def _admin_reload(self) -> str:
        from mailmax.core.admin import AdminError

        try:
            report = self.reload()
        except ReloadError as exc:
            raise AdminError(f"reload refused, nothing changed: {exc}") from None
        return json.dumps(dataclasses.asdict(report))

    def _on_sighup(self, signum: int, frame: Any) -> None:
        def attempt() -> None:
            with contextlib.suppress(ReloadError):  # already logged with its reason
                self.reload()

        self.reactor.callFromThread(attempt)

    # ------------------------------------------------------------------ lifecycle
    def startService(self) -> None:
        """Open storage, start the queue runner and listen on every configured address."""
        settings = self.settings
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        if settings.server.log_file:
            self._logfile = MailLogFile(settings.path(settings.server.log_file))
            self._logfile.start()
        log.info("MailMax starting in {data_dir}", data_dir=str(data_dir))
        self.observe.start()

        self.directory = Directory.open(
            settings.database_url,
            base_dir=settings.data_dir,
            blank_password_default=BlankPasswordPolicy(settings.server.blank_password),
        )
        self.directory.ldap_sources = build_ldap_sources(settings.ldap)
        self.directory.login_cache_seconds = settings.auth.cache_seconds
        self.async_directory = AsyncDirectory(
            self.directory,
            cache_seconds=settings.server.directory_cache_seconds,
            reactor=self.reactor,
        )
        self.async_directory.start()
        self.portal.use_directory(self.async_directory)
        self.audit_pruner = self._audit_pruner(self.async_directory)
        self.audit_pruner.start()
        self.spool = Spool(
            settings.spool_dir,
            fsync=settings.spool.fsync,
            threads=settings.spool.commit_threads,
            max_batch=settings.spool.max_batch,
            sync=settings.spool.sync,
            reactor=self.reactor,
            helper=True,
        )
        self.spool.start()
        self.plugins.start(
            directory=self.directory,
            async_directory=self.async_directory,
            spool=self.spool,
            reload=self._admin_reload,
            admin_commands=(
                {**admin.auth_commands(self.authlimit)[0], **self.observe.admin_commands()},
                admin.auth_commands(self.authlimit)[1],
            ),
            admin_streams=self.observe.admin_streams(),
        )
        self.queue = QueueRunner(
            spool=self.spool,
            directory=self.directory,
            plugins=self.current_plugins,
            settings=settings,
            reactor=self.reactor,
            cluster=self.cluster,
        )
        self.queue.events = self.queue.outbound.resolver.events = self.observe.bus
        self.queue.metrics = self.plugins.host.metrics
        self.queue.setServiceParent(self)
        if self.cluster is not None:
            from mailmax.core.cluster.peer import PeerListener
            from mailmax.core.cluster.transfer import TransferListener

            PeerListener(self, self.cluster).setServiceParent(self)
            TransferListener(self, self.cluster).setServiceParent(self)
        super().startService()
        self._listen()
        if hasattr(signal, "SIGHUP"):
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)

    def _audit_pruner(self, directory: AsyncDirectory) -> AuditPruner:
        """Drops the audit log's old entries (``[admin] audit_retention_days``)."""
        from mailmax.core.directory.admins import AdminStore

        def prune(before: float) -> defer.Deferred[int]:
            return directory.run(AdminStore(directory.sync).prune_audit, before)

        return AuditPruner(self.reactor, lambda: self.settings, prune)

    def _listen(self) -> None:
        settings = self.settings
        pending = []
        backlog = settings.connections.backlog
        for listener, options in zip(settings.listeners, listener_options(settings), strict=True):
            self._tls.append(None)
            holder = self._tls_holder(len(self._tls) - 1, options)
            implicit_tls = listener.service in IMPLICIT_TLS_SERVICES
            factory = self._factory(listener, holder)
            if implicit_tls:
                endpoint = endpoints.SSL4ServerEndpoint(
                    self.reactor,
                    listener.port,
                    holder,
                    backlog=backlog,
                    interface=listener.address,
                )
            else:  # an IPv6 interface gives an IPv6 socket
                endpoint = endpoints.TCP4ServerEndpoint(
                    self.reactor, listener.port, backlog=backlog, interface=listener.address
                )
            self.factories.append(factory)
            d = endpoint.listen(factory)
            d.addCallback(self._listening, listener)
            pending.append(d)
        if settings.admin.enabled:
            pending.append(self._listen_api())
        done = defer.DeferredList(pending, fireOnOneErrback=True, consumeErrors=True)
        done.addCallback(lambda _: self._listening_done())
        done.addErrback(self._listen_failed)

    def _factory(self, listener: ListenerSettings, tls_options: Any) -> Any:
        """The protocol factory for one listener's service."""
        common = {
            "settings": self.settings,
            "listener": listener,
            "directory": self.async_directory,
            "plugins": self.current_plugins,
            "tls_options": tls_options,
            "reactor": self.reactor,
            "authlimit": self.authlimit,
            "logins": self.logins,
            "limiter": self.limiter,
            "portal": self.portal,
            "events": self.observe.bus,
            "activity": self.observe.activity,
        }
        if listener.service in SMTP_SERVICES:
            return PluginSMTPFactory(
                spool=self.spool, commit_seconds=self.observe.prometheus.commit_seconds, **common
            )
        factory: Any
        if listener.service in ("pop3", "pop3s"):
            from mailmax.core.pop3.server import POP3Factory

            factory = POP3Factory(**common)
        else:
            from mailmax.core.imap.factory import IMAPFactory

            factory = IMAPFactory(**common)
        factory.cluster = self.cluster  # log-ins of users homed elsewhere go there
        return factory

    def peer_tls_options(self) -> Any:
        """The ``[tls]`` certificate's server options (None when there is none)."""
        settings = self.settings
        cert, key = settings.path(settings.tls.cert), settings.path(settings.tls.key)
        if not (cert.exists() and key.exists()):
            return None
        return server_options(cert, key, settings.tls.min_version)

    def _listening(self, port: IListeningPort, listener: ListenerSettings) -> None:
        self.ports.append((listener, port))
        host = port.getHost()
        log.info(
            "listening for {service} on {address}:{port}",
            service=listener.service,
            address=host.host,
            port=host.port,
        )

    def _listen_api(self) -> defer.Deferred[None]:
        """Serve the admin API on ``[admin] address``:``port``."""
        from mailmax.core.api import listener
        from mailmax.core.api.app import AdminApi
        from mailmax.core.web.app import WebAdmin

        try:
            tls = listener.tls_options(self.settings)
        except (config_mod.ConfigError, TLSConfigError) as exc:
            return defer.fail(exc)
        self.api = AdminApi(self)
        WebAdmin(self.api)
        site = listener.AdminSite(self.api.resource(), self.settings.admin.max_body_bytes)
        d = listener.listen(self.reactor, self.settings, site, tls)

        def listening(port: IListeningPort) -> None:
            self.api_port = port
            host = port.getHost()
            log.info("admin API on https://{address}:{port}/", address=host.host, port=host.port)

        return d.addCallback(listening)

    def _listen_failed(self, failure: Any) -> None:
        error = (
            failure.value.subFailure.value
            if hasattr(failure.value, "subFailure")
            else failure.value
        )
        log.critical("cannot listen: {error}; stopping", error=str(error))
        self.reactor.callLater(0, self.reactor.stop)

    def _listening_done(self) -> None:
        """Every listener is up: record the ports; keep start-up objects out of full GC passes."""
        self._write_ports()
        heap.freeze_startup_objects()

    def _write_ports(self) -> None:
        """Record the bound ports in ``<data>/run/ports.json`` (useful with port 0)."""
        run_dir = self.settings.data_dir / "run"
        run_dir.mkdir(exist_ok=True)
        record = [
            {
                "service": listener.service,
                "address": port.getHost().host,
                "port": port.getHost().port,
            }
            for listener, port in self.ports
        ]
        if self.api_port is not None:
            host = self.api_port.getHost()
            record.append({"service": "admin", "address": host.host, "port": host.port})
        tmp = run_dir / "ports.json.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, run_dir / "ports.json")

    async def _stop(self) -> None:
        grace = self.settings.server.shutdown_grace_seconds
        log.info(
            "MailMax stopping: no new connections, {grace}s for transactions in flight", grace=grace
        )
        listening = [port for _, port in self.ports]
        if self.api_port is not None:
            listening.append(self.api_port)
        await defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in listening])
        await defer.gatherResults([factory.shutdown(grace) for factory in self.factories])
        await defer.maybeDeferred(super().stopService)
        await self.plugins.stop()
        self.observe.stop()
        if self.audit_pruner is not None:
            self.audit_pruner.stop()
        if self.spool is not None:
            await self.spool.stop()
        if self.async_directory is not None:
            self.async_directory.stop()
        if self.directory is not None:
            self.directory.close()
        ports_file = self.settings.data_dir / "run" / "ports.json"
        ports_file.unlink(missing_ok=True)
        log.info("MailMax stopped")
        if self._logfile is not None:
            self._logfile.stop()

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening, let transactions finish within the grace period, close storage."""
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
        return defer.ensureDeferred(self._stop())


def make_service(config_path: str | Path) -> MailMaxService:
    """Load ``config_path`` and build the service (raises ConfigError on a bad file)."""
    return MailMaxService(config_mod.load(config_path))
