"""Test helpers for plugin authors: run a plugin's hooks directly, or start a real server.

Unit level::

    from mailmax.testing import PluginHarness, make_envelope, make_session

    harness = PluginHarness(my_plugin, {"blocked": ["bad.example"]})
    verdict = harness.run("mailmax_helo", session=make_session(), helo="bad.example")
    assert verdict.code == 550

End to end (a real ``twistd mailmax`` on 127.0.0.1 with the plugins you name)::

    pytest_plugins = ["mailmax.testing"]

    def test_refused(mailmax_server):
        server = mailmax_server(plugins=["my_plugin"], settings={"my_plugin": {...}})
        with server.smtp() as client:
            code, _ = client.helo("bad.example")
        assert code == 550

The server has the domain ``example.test`` with the users ``alice`` and ``bob`` (passwords
``alicesecret``, ``bobsecret``) and ``postmaster``.

A plugin with a key-value store, tables or scheduled tasks is unit-tested with a database and a
fake clock, on the server's code path::

    harness = PluginHarness(my_plugin, database_url=f"sqlite:///{tmp_path / 'test.db'}")
    harness.result(harness.kv.set("greeting", "hello"))
    harness.advance(60)        # runs the tasks due in the next minute
    assert harness.metrics()["counters"]["my_plugin.task.flush.runs"] == 1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from mailmax.core.hooks import LoadedPlugin, PluginError, PluginSet, Scope, configure
from mailmax.core.model import Envelope, Recipient, Session
from mailmax.core.pluginhost import dataphase, discovery
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.pluginhost.host import PluginHost
from mailmax.core.pluginhost.lifecycle import PluginLifecycle
from mailmax.core.pluginhost.scopes import HOOK_SCOPES, OverrideSource, ScopeStore, scopes_of
from mailmax.core.verdicts import cont
from mailmax.testing_server import DOMAIN, USERS, TestServer, mailmax_server, start_server

__all__ = [
    "DOMAIN",
    "USERS",
    "PluginHarness",
    "TestServer",
    "mailmax_server",
    "make_envelope",
    "make_session",
    "start_server",
]


# ---------------------------------------------------------------------- unit level
def make_session(**fields: Any) -> Session:
    """A session as a hook sees it: a client at 192.0.2.10 on the smtp listener 127.0.0.1:25."""
    values: dict[str, Any] = {
        "session_id": "test-session",
        "peer_ip": "192.0.2.10",
        "peer_port": 40000,
        "local_ip": "127.0.0.1",
        "local_port": 25,
        "service": "smtp",
        "helo": "client.example",
        "esmtp": True,
    }
    values.update(fields)
    return Session(**values)


def make_envelope(sender: str = "sender@example.org", recipients: Sequence[str] = ()) -> Envelope:
    """An envelope with local recipients (their mailbox is the address itself)."""
    return Envelope(
        sender=sender,
        recipients=[Recipient(address=r, kind="local", mailbox=r) for r in recipients],
    )


class _HarnessOverrides(OverrideSource):
    """The harness's domain and user overrides, kept in memory like the server's snapshot."""

    def __init__(self, plugin: str, overrides: Mapping[tuple[str, str], Any]) -> None:
        super().__init__()
        if overrides:
            self._data = {plugin: dict(overrides)}
        self.generation = 1


class PluginHarness:
    """One plugin in a plugin set of its own, run the way the server runs it.

    ``plugin`` is a module (or any object with hook implementations) or a plugin name
    (built-in, installed, or dotted module path). ``settings`` are its system settings,
    validated against its declared ``Settings``; ``overrides`` maps a :class:`Scope` (a
    listening address, a domain or a user) to the settings (and ``enabled``) of that scope,
    refused like ``mailmax plugin set`` refuses them when the plugin cannot be set there.
    ``host`` is the :class:`~mailmax.core.pluginhost.host.PluginHost` hooks get (default: one
    with a data directory ``data_dir`` and no directory).

    Scopes are resolved by the server's own code: :meth:`run` gives each hook the scope the
    server would (see :mod:`mailmax.core.pluginhost.dataphase`), and ``mailmax_data`` gives a
    verdict per recipient.
    """

    def __init__(
        self,
        plugin: Any,
        settings: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[Scope, Mapping[str, Any]] | None = None,
        host: PluginHost | None = None,
        data_dir: Path | str = ".",
        name: str | None = None,
        max_message_size: int = 10 * 1024 * 1024,
        max_hops: int = 50,
        database_url: str | None = None,
        clock: Any = None,
    ) -> None:
        if isinstance(plugin, str):
            name = name or plugin
            plugin = discovery.import_plugin(discovery.find(plugin))
        self.name = name or getattr(plugin, "__name__", "plugin").rpartition(".")[2]
        schema = schemas.schema_of(plugin)
        allowed = scopes_of(plugin)
        listeners: dict[str, dict[str, Any]] = {}
        stored: dict[tuple[str, str], tuple[bool | None, dict[str, Any]]] = {}
        for scope, values in (overrides or {}).items():
            kind, key = _override_key(scope)
            if kind not in allowed:
                raise PluginError(
                    f"plugin {self.name} cannot be set per {kind}; it works per "
                    f"{', '.join(allowed)}"
                )
            values = dict(values)
            if kind == "listener":
                listeners[key] = values
            else:
                enabled = values.pop("enabled", None)
                stored[(kind, key)] = (None if enabled is None else bool(enabled), values)
        self.plugin = LoadedPlugin(
            self.name,
            plugin,
            schemas.validate(self.name, schema, settings or {}),
            schema=schema,
            listeners=listeners,
        )
        self.clock = clock if clock is not None else task.Clock()
        self.directory: Any = None
        if database_url is not None:
            from mailmax.core.directory.sql import SQLDirectory

            self.directory = SQLDirectory.open(database_url, base_dir=data_dir)
        self.host = host or PluginHost(
            data_dir=data_dir, sync_directory=self.directory, clock=self.clock
        )
        self.scopes = ScopeStore(_HarnessOverrides(self.name, stored))
        problems = self.scopes.problems([self.plugin])
        if problems:
            raise PluginError("; ".join(problems))
        self.plugin_set = PluginSet([self.plugin], self.scopes, host=self.host)
        self.plugin_set.scopes = self.scopes
        self.limits = dataphase.Limits(max_message_size, max_hops)
        configure(self.plugin_set)
        #: The plugin's tables and scheduled tasks, brought up as the server does.
        self.lifecycle = PluginLifecycle(self.host)
        try:
            self.lifecycle.activate(self.lifecycle.prepare(self.plugin_set))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ data and schedules
    @property
    def context(self) -> Any:
        """The plugin's :class:`~mailmax.core.pluginhost.services.PluginContext` (its
        ``kv``, ``metrics``, ``log``, ``tables`` and ``transaction()``)."""
        return self.host.for_plugin(self.name)

    @property
    def kv(self) -> Any:
        """The plugin's key-value store."""
        return self.host.kv(self.name)

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, running every task that falls due at its time
        (as a running server would: a task due every minute runs ten times in ten minutes)."""
        target = self.clock.seconds() + seconds
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= target]
            if not due:
                break
            self.clock.advance(max(min(due) - self.clock.seconds(), 0))
        self.clock.advance(target - self.clock.seconds())

    def run_task(self, name: str) -> Any:
        """Run the plugin's scheduled task ``name`` once now (its result, or its Deferred)."""
        for planned in self.lifecycle.scheduler.tasks:
            if planned.plugin == self.name and planned.name == name:
                return self.result(self.lifecycle.scheduler.run_now(planned))
        raise KeyError(f"plugin {self.name} has no scheduled task {name!r}")

    def next_run(self, name: str) -> float | None:
        """When (clock seconds) the task ``name`` runs next."""
        return self.lifecycle.scheduler.next_run(self.name, name)

    def metrics(self) -> dict[str, dict[str, float]]:
        """The plugin's counters and gauges (full names, ``<plugin>.<name>``)."""
        return self.host.metrics.snapshot(self.name.lower() + ".")

    def result(self, d: Any) -> Any:
        """The value of a Deferred that has fired (raises its error); other values as they are.

        A Deferred still pending is returned unchanged."""
        return _settled(d) if isinstance(d, defer.Deferred) else d

    def close(self) -> None:
        """Stop the scheduled tasks and close the database."""
        if hasattr(self, "lifecycle"):
            self.lifecycle.stop()
        if self.directory is not None:
            self.directory.close()
            self.directory = None

    def scope_for(self, hook: str, **kwargs: Any) -> Scope:
        """The scope the server runs ``hook`` with for these arguments."""
        session = kwargs.get("session")
        listener = session.local_ip if session is not None else None
        if hook in ("mailmax_connect", "mailmax_helo"):
            return dataphase.connection_scope(listener)
        if hook == "mailmax_auth" and kwargs.get("username"):
            return dataphase.login_scope(kwargs["username"], listener)
        if hook in ("mailmax_mail_from", "mailmax_message_accepted"):
            return dataphase.sender_scope(session or make_session(), listener)
        if hook == "mailmax_rcpt_to" and kwargs.get("recipient") is not None:
            return dataphase.harness_recipient_scope(kwargs["recipient"], listener)
        if hook in ("mailmax_deliver", "mailmax_expand_recipient") and "mailbox" in kwargs:
            mailbox = kwargs["mailbox"]
            return Scope(domain=mailbox.rpartition("@")[2].lower() or None, user=mailbox)
        if hook == "mailmax_resolve_recipient" and "address" in kwargs:
            return Scope(domain=kwargs["address"].rpartition("@")[2].lower() or None)
        return Scope(listener=listener)

    def run(self, hook: str, scope: Scope | None = None, **kwargs: Any) -> Any:
        """Run ``hook``: a policy hook gives its Verdict (``cont()`` for no opinion), a
        delivery hook its answer. A result still pending is returned as a Deferred.

        The scope comes from the arguments as in the server (the session's listening address,
        the authenticated sender, the recipient, the mailbox); an explicit ``scope`` must be
        one the server could use for this hook (a ``ValueError`` says why not).
        ``mailmax_data`` answers the one reply for all of ``envelope``'s recipients; see
        :meth:`data` for each recipient's verdict and message.
        """
        if hook == "mailmax_data":
            if scope is not None:
                raise ValueError(
                    "mailmax_data runs with each recipient's scope: give the recipients in "
                    "envelope (make_envelope(sender, [...])) instead of a scope"
                )
            return _settled(defer.ensureDeferred(self._data_reply(kwargs)))
        scope = self._checked_scope(hook, scope, kwargs)
        if hook in ("mailmax_deliver", "mailmax_expand_recipient") and "user" not in kwargs:
            # the mailbox's directory record, as the server gives it (or pass user=User(...))
            found = self.directory.get_user(kwargs["mailbox"]) if self.directory else None
            kwargs["user"] = found
        if hook in ("mailmax_resolve_recipient",):
            return self.plugin_set.first_result(hook, scope, **kwargs)
        if hook == "mailmax_expand_recipient":
            results = self.plugin_set.all_results(hook, scope, **kwargs)
            return results[0] if results else None
        if hook == "mailmax_message_accepted":
            return _settled(defer.ensureDeferred(self.plugin_set.notify(hook, scope, **kwargs)))
        if hook == "mailmax_deliver":
            return _settled(
                defer.ensureDeferred(self.plugin_set.first_async(hook, scope, **kwargs))
            )
        return _settled(self.plugin_set.run_policy(hook, scope, **kwargs))

    def data(
        self, envelope: Envelope, message: bytes, session: Session | None = None
    ) -> dataphase.DataDecision | defer.Deferred[dataphase.DataDecision]:
        """Run ``mailmax_data`` as the server does at the end of DATA: one verdict (and one
        changed message) per group of recipients, and the reply they make together."""
        return _settled(
            defer.ensureDeferred(self._decide(envelope, message, session or make_session()))
        )

    async def _decide(
        self, envelope: Envelope, message: bytes, session: Session
    ) -> dataphase.DataDecision:
        scopes = [
            dataphase.harness_recipient_scope(r, session.local_ip) for r in envelope.recipients
        ]
        groups = await dataphase.run_data(
            self.plugin_set, session, envelope, message, scopes, self.limits
        )
        return dataphase.decide(groups)

    async def _data_reply(self, kwargs: Mapping[str, Any]) -> Any:
        envelope = kwargs.get("envelope") or make_envelope()
        if not envelope.recipients:
            raise ValueError("mailmax_data needs an envelope with recipients")
        decision = await self._decide(
            envelope, kwargs.get("message", b""), kwargs.get("session") or make_session()
        )
        return decision.reply() if decision.refusal is not None else cont()

    def _checked_scope(self, hook: str, scope: Scope | None, kwargs: Mapping[str, Any]) -> Scope:
        derived = self.scope_for(hook, **kwargs)
        if scope is None:
            return derived
        honoured = HOOK_SCOPES.get(hook, frozenset({"system"}))
        for kind, value in (("domain", scope.domain), ("user", scope.user)):
            if value is not None and kind not in honoured:
                raise ValueError(f"{hook} never runs with a {kind} scope; the server ignores it")
        if scope.listener is not None and "listener" not in honoured:
            raise ValueError(f"{hook} never runs with a listener scope; the server ignores it")
        recipient = kwargs.get("recipient") if hook == "mailmax_rcpt_to" else None
        if recipient is not None and derived.domain not in (None, scope.domain or derived.domain):
            raise ValueError(
                f"mailmax_rcpt_to for {recipient.address} runs with the scope of "
                f"domain {derived.domain}, not {scope.domain}"
            )
        return scope


def _override_key(scope: Scope) -> tuple[str, str]:
    """The kind and name of an override given as a :class:`Scope`."""
    if scope.user is not None:
        return "user", scope.user.lower()
    if scope.domain is not None:
        return "domain", scope.domain.lower()
    if scope.listener is not None:
        return "listener", scope.listener
    raise ValueError("an override needs a listener, a domain or a user; system settings go first")


def _settled(d: defer.Deferred[Any]) -> Any:
    """The result of ``d`` when it has fired (raising its failure), else ``d``."""
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        return d
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]
