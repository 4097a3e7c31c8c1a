"""The host's services for plugins: data, DNS, sending, logging and metrics.

:class:`HostServices` is part of :class:`~mailmax.core.pluginhost.host.PluginHost`:

- ``host.for_plugin(name)``: a :class:`PluginContext`, everything one plugin owns (its
  key-value store, its tables, its metrics and its logger);
- ``host.kv(name)``: the plugin's :class:`~.storage.KeyValueStore`;
- ``host.transaction(function, *args, write=False)``: run ``function(connection, *args)`` in a
  directory transaction in a worker thread (for a plugin's own tables);
- ``host.dns``: a :class:`HostResolver` with the configured servers and timeout;
- ``host.send(sender, recipients, message)``: queue a new message (a notice);
- ``host.metrics``: the process's :class:`~.metrics.Metrics`;
- ``host.clock``: the clock expiries and schedules use (the reactor's).
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import client, dns, error

from mailmax.core.directory.engine import transaction
from mailmax.core.outbound.dns import DNSTemporaryError, MXHost, Resolver
from mailmax.core.pluginhost.metrics import Metrics, PluginMetrics
from mailmax.core.pluginhost.storage import KeyValueStore, PluginTables

#: Most recipients one :meth:`HostServices.send` takes.
MAX_SEND_RECIPIENTS = 1000


class HostResolver:
    """DNS look-ups for plugins, with the server's ``[queue] dns_servers`` and ``dns_timeout``.

    Every method returns a Deferred. A name that does not exist (or has no such records) gives
    ``[]``; no answer in time, or a server failure, fails with
    :class:`~mailmax.core.outbound.dns.DNSTemporaryError`.
    """

    def __init__(
        self,
        *,
        reactor: Any,
        servers: Sequence[tuple[str, int]] = (),
        timeout: float = 30.0,
        ip_versions: str = "both",
    ) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.servers = list(servers)
        self._mail = Resolver(
            reactor=reactor, servers=servers, timeout=timeout, ip_versions=ip_versions
        )
        if servers:
            self._client = client.Resolver(servers=list(servers), reactor=reactor)
        else:
            self._client = client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)

    def mx(self, domain: str) -> defer.Deferred[list[MXHost]]:
        """The mail hosts of ``domain``, as outbound delivery sees them (most preferred first)."""
        return defer.ensureDeferred(self._mail.mx(domain))

    def addresses(self, host: str) -> defer.Deferred[list[str]]:
        """The IPv4 and IPv6 addresses of ``host`` (``/etc/hosts`` first)."""
        return defer.ensureDeferred(self._mail.addresses(host))

    def txt(self, name: str) -> defer.Deferred[list[str]]:
        """The TXT records of ``name``, each as one string (its parts joined)."""
        d = self._query(self._client.lookupText, name)
        return d.addCallback(
            lambda answers: [
                b"".join(rr.payload.data).decode("utf-8", "replace")
                for rr in answers
                if rr.type == dns.TXT
            ]
        )

    def a(self, name: str) -> defer.Deferred[list[str]]:
        """The IPv4 addresses in ``name``'s A records, from the DNS only (a DNSBL look-up)."""
        d = self._query(self._client.lookupAddress, name)
        return d.addCallback(
            lambda answers: [rr.payload.dottedQuad() for rr in answers if rr.type == dns.A]
        )

    def ptr(self, ip: str) -> defer.Deferred[list[str]]:
        """The names of the reverse (PTR) records of the address ``ip``."""
        from ipaddress import ip_address

        d = self._query(self._client.lookupPointer, ip_address(ip).reverse_pointer)
        return d.addCallback(
            lambda answers: [
                str(rr.payload.name).rstrip(".").lower() for rr in answers if rr.type == dns.PTR
            ]
        )

    def _query(self, method: Callable[..., Any], name: str) -> defer.Deferred[list[Any]]:
        name = name.rstrip(".")
        tries = (self.timeout * 0.2, self.timeout * 0.8) if self.timeout >= 2 else (self.timeout,)
        d = method(name, timeout=tries)
        d.addTimeout(self.timeout + 1, self.reactor)

        def answers(result: Any) -> list[Any]:
            return list(result[0])

        def failed(failure: Any) -> list[Any]:
            if failure.check(error.DNSNameError):
                return []
            if failure.check(error.DNSQueryTimeoutError, defer.TimeoutError):
                reason = "timed out"
            else:
                reason = failure.getErrorMessage() or failure.type.__name__
            raise DNSTemporaryError(f"451 4.4.3 DNS look-up of {name} failed: {reason}")

        return d.addCallbacks(answers, failed)


class PluginContext:
    """What one plugin owns on the host: ``kv``, ``metrics``, ``log``, its ``tables``, and
    ``transaction()`` to use them."""

    def __init__(self, host: HostServices, name: str, tables: PluginTables | None = None):
        self.name = name
        self.host = host
        #: The plugin's key-value store.
        self.kv: KeyValueStore = host.kv(name)
        #: The plugin's counters and gauges (``<plugin>.<name>``).
        self.metrics = PluginMetrics(host.metrics, name)
        #: A twisted.logger Logger in the namespace ``mailmax.plugins.<name>``.
        self.log = Logger(namespace=f"mailmax.plugins.{name}")
        #: The plugin's declared tables (its ``TABLES``), or None.
        self.tables = tables

    def transaction(
        self, function: Callable[..., Any], *args: Any, write: bool = False
    ) -> defer.Deferred[Any]:
        """Run ``function(connection, *args)`` in a directory transaction, in a worker thread."""
        return self.host.transaction(function, *args, write=write)


class HostServices:
    """The services part of the plugin host (see the module documentation)."""

    hostname: str
    reactor: Any
    _sync: Callable[[], Any]
    _in_thread: Callable[..., defer.Deferred[Any]]
    _submit: Callable[..., Any]
    spool: Any

    def _init_services(self, settings: Any, clock: Any, metrics: Metrics | None) -> None:
        #: The server's settings (None for a host built without a configuration).
        self.settings = settings
        self._clock = clock
        self.metrics = metrics or Metrics()
        self._dns: HostResolver | None = None
        self._tables: dict[str, PluginTables] = {}
        #: One context per plugin name, made on first use (hooks ask for it on every call).
        self._contexts: dict[str, PluginContext] = {}

    @property
    def clock(self) -> Any:
        """The clock of expiries and schedules: the reactor, or the clock given."""
        if self._clock is not None:
            return self._clock
        return self.reactor if self.reactor is not None else _global_reactor()

    def use_settings(self, settings: Any) -> None:
        """Take new server settings (a reload): the DNS resolver is rebuilt with them."""
        self.settings = settings
        self._dns = None
        self._contexts = {}

    def declare_tables(self, tables: dict[str, PluginTables]) -> None:
        """Record the tables the current plugin set's plugins declare (by plugin name)."""
        self._tables = dict(tables)
        self._contexts = {}

    # ------------------------------------------------------------------ data
    def kv(self, plugin: str) -> KeyValueStore:
        """The key-value store of ``plugin`` (its own namespace)."""
        return KeyValueStore(plugin, lambda: self._sync().engine, self._in_thread, self.clock)

    def for_plugin(self, plugin: str) -> PluginContext:
        """Everything ``plugin`` owns on the host (see :class:`PluginContext`); the same object
        for every call until the plugin set or the settings change."""
        context = self._contexts.get(plugin)
        if context is None:
            context = self._contexts[plugin] = PluginContext(self, plugin, self._tables.get(plugin))
        return context

    def _transaction(self, function: Callable[..., Any], write: bool, *args: Any) -> Any:
        engine: sa.Engine = self._sync().engine
        with transaction(engine, write=write, lock=False) as connection:
            return function(connection, *args)

    def transaction(
        self, function: Callable[..., Any], *args: Any, write: bool = False
    ) -> defer.Deferred[Any]:
        """Run ``function(connection, *args)`` in a directory transaction in a worker thread;
        committed when it returns, rolled back when it raises."""
        return self._in_thread(self._transaction, function, write, *args)

    # ------------------------------------------------------------------ DNS
    @property
    def dns(self) -> HostResolver:
        """The DNS resolver plugins use (``[queue] dns_servers`` and ``dns_timeout``)."""
        if self._dns is None:
            queue = getattr(self.settings, "queue", None)
            self._dns = HostResolver(
                reactor=self.reactor if self.reactor is not None else _global_reactor(),
                servers=queue.dns_server_addresses if queue is not None else (),
                timeout=queue.dns_timeout if queue is not None else 30.0,
                ip_versions=queue.ip_versions if queue is not None else "both",
            )
        return self._dns

    # ------------------------------------------------------------------ sending
    def send(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes | email.message.Message,
        *,
        queue_id: str | None = None,
    ) -> defer.Deferred[str]:
        """Queue a new ``message`` from ``sender`` (``""`` for a notice that must not bounce)
        to ``recipients``; fires with its queue id once it is durable.

        An ``email.message.Message`` gets a ``Date`` and a ``Message-ID`` when it has none.
        Refused (a failed Deferred with ValueError) when it is larger than
        ``[smtp] max_message_size`` or has no (or too many) recipients.
        """
        try:
            data = self._message_bytes(message)
            self._check_send(sender, recipients, data)
        except ValueError as exc:
            return defer.fail(exc)
        if self.spool is None:
            return defer.fail(RuntimeError("this plugin host has no spool"))
        return defer.ensureDeferred(self._submit(sender, list(recipients), data, queue_id, ""))

    def _message_bytes(self, message: bytes | email.message.Message) -> bytes:
        if isinstance(message, bytes):
            return message
        if not isinstance(message, email.message.Message):
            raise ValueError("the message must be bytes or an email.message.Message")
        if message["Date"] is None:
            message["Date"] = email.utils.formatdate(self.clock.seconds())
        if message["Message-ID"] is None:
            message["Message-ID"] = email.utils.make_msgid(domain=self.hostname)
        return message.as_bytes(policy=email.policy.SMTP)

    def _check_send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        if isinstance(recipients, str):
            raise ValueError("recipients must be a list of addresses, not one string")
        if not 0 < len(recipients) <= MAX_SEND_RECIPIENTS:
            raise ValueError(f"a message needs 1 to {MAX_SEND_RECIPIENTS} recipients")
        for address in [sender, *recipients] if sender else recipients:
            local, at, domain = address.rpartition("@")
            if not (local and at and domain) or any(c in address for c in " <>\r\n"):
                raise ValueError(f"{address!r} is not an e-mail address")
        smtp = getattr(self.settings, "smtp", None)
        limit = smtp.max_message_size if smtp is not None else 0
        if limit and len(data) > limit:
            raise ValueError(
                f"the message is {len(data)} bytes, over [smtp] max_message_size ({limit})"
            )


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor
