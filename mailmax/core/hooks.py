"""The plugin set and the driver that runs policy hooks asynchronously, in order.

pluggy registers plugins and validates their hook implementations against
:mod:`mailmax.core.hookspecs`; MailMax walks the implementations itself because policy hooks may
return Deferreds (pluggy's ``firstresult`` would stop at the first Deferred it sees).

A :class:`PluginSet` is immutable once built: a session takes the current set when it starts and
keeps it, so swapping in a new set (a reload) never changes a transaction in flight.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any, NamedTuple

import pluggy
from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core import hookspecs, verdicts
from mailmax.core.pluginhost import discovery
from mailmax.core.pluginhost.errors import PluginError
from mailmax.core.verdicts import Verdict

log = Logger(namespace="mailmax.plugins")

#: The plugin host of the set whose hook is running (see :func:`mailmax.plugin.current_host`).
CURRENT_HOST: contextvars.ContextVar[Any] = contextvars.ContextVar("mailmax_host", default=None)

#: The built-ins a configuration without ``[plugins] enabled`` runs, in this order.
#: Resolvers run before the catch-all; spam traps decide before forwarding delivers; the
#: auto-responder answers before forwarding may drop the local copy; forwarding queues its
#: copies before the rules choose a folder.
DEFAULT_ENABLED: tuple[str, ...] = (
    "bans",
    "aliases",
    "spamtrap",
    "autoreply",
    "forwarding",
    "rules",
    "monitor",
    "catchall",
)


@dataclass(frozen=True)
class Scope:
    """Where a hook runs: the system, or narrowed to a domain and a user (``user@domain``)."""

    domain: str | None = None
    user: str | None = None
    listener: str | None = None


SYSTEM = Scope()


@dataclass(frozen=True)
class LoadedPlugin:
    """One plugin in a set: its name, module and system-level settings.

    ``system_enabled`` is False for a plugin loaded only because a domain or user enables it;
    ``listeners`` holds the per-listening-address tables of the config file (raw, with an
    optional ``enabled``); ``schema`` is the plugin's declared settings class (or None);
    ``origin`` says where the code came from (built-in, installed package, plugins directory,
    module).
    """

    name: str
    module: Any
    settings: Mapping[str, Any] = field(default_factory=dict)
    system_enabled: bool = True
    listeners: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    schema: Any = None
    origin: str = "module"
    detail: str = ""


#: Looks up the effective (enabled, settings) of a plugin for a scope; the default is system-only.
ScopeResolver = Callable[[LoadedPlugin, Scope], "tuple[bool, Mapping[str, Any]]"]


def _system_only(plugin: LoadedPlugin, scope: Scope) -> tuple[bool, Mapping[str, Any]]:
    return plugin.system_enabled, plugin.settings


_system_only.generation = 0  # type: ignore[attr-defined]  # its answers never change


#: The cache key of a hook's implementations that answer the same in every scope.
_ANY_SCOPE = object()


class _Active(NamedTuple):
    """One implementation switched on in a scope, with what calling it needs."""

    plugin: LoadedPlugin
    impl: pluggy.HookImpl
    settings: Mapping[str, Any]
    #: The hook arguments the implementation takes (``config`` aside).
    names: tuple[str, ...]
    wants_config: bool


class _Resumed:
    """The rest of a coroutine whose first step already ran: awaiting it runs the remaining
    steps, passing each value the coroutine waits for (and each exception) through."""

    def __init__(self, coroutine: Any, waiting: Any) -> None:
        self.coroutine = coroutine
        self.waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting = self.coroutine, self.waiting
        while True:
            try:
                value = yield waiting
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # handed to the coroutine, as an await would
                step = coroutine.throw, exc
            else:
                step = coroutine.send, value
            try:
                waiting = step[0](step[1])
            except StopIteration as done:
                return done.value


async def _resume(coroutine: Any, waiting: Any) -> Any:
    return await _Resumed(coroutine, waiting)


def start_eagerly(coroutine: Any) -> tuple[bool, Any]:
    """Run the first step of ``coroutine`` now: ``(True, its value)`` when it finished without
    waiting (no Deferred made), else ``(False, a Deferred of the rest)``. Each step runs in a
    copy of the current context, as under ``ensureDeferred``; an exception of the first step
    is raised here."""
    context = contextvars.copy_context()
    try:
        waiting = context.run(coroutine.send, None)
    except StopIteration as done:
        return True, done.value
    return False, context.run(defer.ensureDeferred, _resume(coroutine, waiting))


class PluginSet:
    """An immutable, ordered set of loaded plugins and the means to run their hooks."""

    def __init__(
        self,
        plugins: Iterable[LoadedPlugin],
        resolver: ScopeResolver = _system_only,
        *,
        host: Any = None,
    ) -> None:
        self.plugins: tuple[LoadedPlugin, ...] = tuple(plugins)
        self._resolver = resolver
        #: What plugins may use of the running server (``mailmax.plugin.current_host()``).
        self.host = host
        #: The scope store behind ``resolver`` when the set was built by the platform.
        self.scopes: Any = None
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs.MailMaxHooks)
        self._by_module: dict[int, LoadedPlugin] = {}
        from mailmax.core.pluginhost.scopes import check_declared_scopes

        for plugin in self.plugins:
            check_declared_scopes(plugin.name, plugin.module)
            try:
                self.manager.register(plugin.module, name=plugin.name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                raise PluginError(f"plugin {plugin.name!r}: {exc}") from exc
            self._by_module[id(plugin.module)] = plugin
        try:
            self.manager.check_pending()  # a hook name with a typo is an error, not ignored
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin hook check failed: {exc}") from exc
        self._impls: dict[str, list[tuple[LoadedPlugin, pluggy.HookImpl]]] = {}
        #: ``{(hook, scope): (generation, active implementations)}``; a hook whose
        #: implementations answer the same in every scope has one entry, for :data:`_ANY_SCOPE`.
        self._active_cache: dict[tuple[str, object], tuple[int, tuple[_Active, ...]]] = {}
        self._free_cache: dict[str, tuple[int, bool]] = {}

    #: Most (hook, scope) answers kept; past that the cache starts afresh.
    MAX_CACHED = 20_000

    # ------------------------------------------------------------------ introspection
    def implementations(self, hook: str) -> list[tuple[LoadedPlugin, pluggy.HookImpl]]:
        """The implementations of ``hook`` in the plugin order (the order of the plugin list)."""
        cached = self._impls.get(hook)
        if cached is None:
            caller = getattr(self.manager.hook, hook)
            impls = {id(impl.plugin): impl for impl in caller.get_hookimpls()}
            cached = [(p, impls[id(p.module)]) for p in self.plugins if id(p.module) in impls]
            self._impls[hook] = cached
        return cached

    def hook_order(self) -> dict[str, list[str]]:
        """Every hook of the contract with the plugins implementing it, in the order they run."""
        return {
            name: [plugin.name for plugin, _ in self.implementations(name)]
            for name in hookspecs_names()
        }

    def get(self, name: str) -> LoadedPlugin | None:
        """The plugin called ``name`` in this set, or None."""
        return next((p for p in self.plugins if p.name == name), None)

    def resolve(self, plugin: LoadedPlugin, scope: Scope) -> tuple[bool, Mapping[str, Any]]:
        """``(enabled, settings)`` of ``plugin`` in ``scope``.

        Raises :class:`PluginError` when the stored settings for the scope are not valid.
        """
        try:
            return self._resolver(plugin, scope)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {plugin.name}: settings for {scope}: {exc}") from exc

    def _generation(self) -> int | None:
        """A number that changes whenever the resolver's answers may change (directory
        overrides read afresh); None when the resolver cannot say, and then nothing it
        answers is kept."""
        return getattr(self._resolver, "generation", None)

    def scope_free(self, hook: str) -> bool:
        """True when no implementation of ``hook`` is switched or set narrower than the
        system (then every scope gets the same plugins and settings)."""
        generation = self._generation()
        found = self._free_cache.get(hook)
        if found is not None and generation is not None and found[0] == generation:
            return found[1]
        check = getattr(self._resolver, "scope_free", None)
        if check is None:
            free = self._resolver is _system_only
        else:
            free = all(check(plugin) for plugin, _ in self.implementations(hook))
        if generation is not None:
            self._free_cache[hook] = (generation, free)
        return free

    def _active(self, hook: str, scope: Scope) -> tuple[_Active, ...]:
        """The implementations of ``hook`` switched on in ``scope``, with their settings; kept
        per (hook, scope) until the resolver's generation changes."""
        generation = self._generation()
        if generation is None:
            return self._resolve_active(hook, scope)
        cache = self._active_cache
        for key in ((hook, _ANY_SCOPE), (hook, scope)):
            found = cache.get(key)
            if found is not None and found[0] == generation:
                return found[1]
        free = self.scope_free(hook)
        active = self._resolve_active(hook, scope)
        if len(cache) >= self.MAX_CACHED:
            cache.clear()
        cache[(hook, _ANY_SCOPE) if free else (hook, scope)] = (generation, active)
        return active

    def _resolve_active(self, hook: str, scope: Scope) -> tuple[_Active, ...]:
        out = []
        for plugin, impl in self.implementations(hook):
            enabled, settings = self.resolve(plugin, scope)
            if enabled:
                names = tuple(name for name in impl.argnames if name != "config")
                out.append(_Active(plugin, impl, settings, names, "config" in impl.argnames))
        return tuple(out)

    def _call(
        self, impl: pluggy.HookImpl, settings: Mapping[str, Any], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call one implementation; a coroutine comes back as a Deferred."""
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        if "config" in impl.argnames:
            args["config"] = settings
        token = CURRENT_HOST.set(self.host)
        try:
            result = impl.function(**args)
            if inspect.iscoroutine(result):
                # started here, so its whole body runs where current_host() is set
                result = defer.ensureDeferred(result)
            return result
        finally:
            CURRENT_HOST.reset(token)

    def _start(self, active: _Active, kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        """Call one implementation: ``(True, answer)`` when its answer is there already (a
        coroutine that finished without waiting, a Deferred that has fired), else ``(False,
        something to await)``. Raises what the implementation raised."""
        args = {}
        for name in active.names:  # a loop, not a comprehension: one call less per hook
            if name in kwargs:
                args[name] = kwargs[name]
        if active.wants_config:
            args["config"] = active.settings
        token = CURRENT_HOST.set(self.host)
        try:
            result = active.impl.function(**args)
            if result is None or isinstance(result, Verdict):
                return True, result
            if type(result) is CoroutineType:
                # its first step runs now and its later ones (if any) as a Deferred runs
                # them: each in a copy of this context, where current_host() is set
                return start_eagerly(result)
            if isinstance(result, defer.Deferred):
                steps = result.__iter__()
                try:
                    steps.send(None)
                except StopIteration as done:  # it has fired: its value (or its exception)
                    return True, done.value
                steps.close()
                return False, result
            return not inspect.isawaitable(result), result
        finally:
            CURRENT_HOST.reset(token)

    # ------------------------------------------------------------------ running hooks
    def run_policy(
        self, hook: str, scope: Scope = SYSTEM, **kwargs: Any
    ) -> defer.Deferred[Verdict]:
        """Run a policy hook; fire with the first decisive verdict or ``cont()``.

        A plugin that raises (or fires an errback, or returns something that is not a verdict)
        is logged with its name and turns into a temporary failure, so nothing is accepted that
        a policy would have refused.
        """
        try:
            active = self._active(hook, scope)
        except PluginError as exc:
            log.error("{hook} not run: {error}", hook=hook, error=str(exc))
            return defer.succeed(
                verdicts.tempfail("Local error in policy configuration, try again later")
            )
        if not active:
            return defer.succeed(verdicts.cont())
        # in a context of its own, as a coroutine would run: what a plugin sets stays there
        return contextvars.copy_context().run(self._run_policy, hook, active, kwargs)

    def _run_policy(
        self, hook: str, active: tuple[_Active, ...], kwargs: Mapping[str, Any]
    ) -> defer.Deferred[Verdict]:
        changes = kwargs.get("changes")
        for index, active_one in enumerate(active):
            if changes is not None:
                changes.begin(active_one.plugin.name)
            try:
                ready, result = self._start(active_one, kwargs)
            except Exception:
                return defer.succeed(self._failed(hook, active_one.plugin))
            if not ready:  # the rest of the chain waits for this answer
                return defer.ensureDeferred(self._chain(hook, active, index, result, kwargs))
            if result is not None:
                verdict = self._judge(hook, active_one.plugin, result, kwargs)
                if verdict is not None:
                    return defer.succeed(verdict)
        return defer.succeed(verdicts.cont())

    async def _chain(
        self,
        hook: str,
        active: tuple[_Active, ...],
        index: int,
        waiting: Any,
        kwargs: Mapping[str, Any],
    ) -> Verdict:
        """The chain of :meth:`run_policy` from the implementation at ``index`` on, whose
        answer is ``waiting``."""
        changes = kwargs.get("changes")
        for position in range(index, len(active)):
            active_one = active[position]
            try:
                if position == index:
                    result = await waiting
                else:
                    if changes is not None:
                        changes.begin(active_one.plugin.name)
                    ready, result = self._start(active_one, kwargs)
                    if not ready:
                        result = await result
            except Exception:
                return self._failed(hook, active_one.plugin)
            verdict = self._judge(hook, active_one.plugin, result, kwargs)
            if verdict is not None:
                return verdict
        return verdicts.cont()

    @staticmethod
    def _failed(hook: str, plugin: LoadedPlugin) -> Verdict:
        """Log the exception being handled; the temporary failure that answers for it."""
        log.failure("plugin {plugin} failed in {hook}", plugin=plugin.name, hook=hook)
        return verdicts.tempfail(
            "Local error in policy check, try again later", 451, "4.3.0"
        ).with_plugin(plugin.name)

    def _judge(
        self, hook: str, plugin: LoadedPlugin, result: Any, kwargs: Mapping[str, Any]
    ) -> Verdict | None:
        """What a policy answer means for the chain: None to go on, else its outcome."""
        if result is None:
            return None
        if not isinstance(result, Verdict):
            log.error(
                "plugin {plugin} returned {value!r} from {hook}; expected a Verdict or None",
                plugin=plugin.name,
                value=result,
                hook=hook,
            )
            return verdicts.tempfail("Local error in policy check", 451, "4.3.0").with_plugin(
                plugin.name
            )
        if result.decisive:
            self._note_verdict(hook, plugin.name, result, kwargs)
            return result.with_plugin(plugin.name)
        return None

    async def notify(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> None:
        """Run a notification hook: every enabled implementation in order, each awaited;
        answers are ignored and a plugin that fails is logged, never passed on."""
        try:
            active = self._active(hook, scope)
        except PluginError as exc:
            log.error("{hook} not run: {error}", hook=hook, error=str(exc))
            return
        for active_one in active:
            try:
                ready, result = self._start(active_one, kwargs)
                if not ready:
                    await result
            except Exception:
                log.failure(
                    "plugin {plugin} failed in {hook}", plugin=active_one.plugin.name, hook=hook
                )

    def _note_verdict(
        self, hook: str, plugin: str, verdict: Verdict, kwargs: Mapping[str, Any]
    ) -> None:
        """Count a decisive verdict per plugin and publish it (category ``policy``)."""
        host = self.host
        if host is None:
            return
        action = verdict.action.name.lower()
        metrics = getattr(host, "metrics", None)
        if metrics is not None:
            with contextlib.suppress(ValueError):  # a plugin name no metric name can hold
                metrics.increment(f"mailmax.verdicts.{plugin.lower()}.{action}")
        bus = getattr(host, "event_bus", None)
        session = kwargs.get("session")
        service = getattr(session, "service", "queue") if session is not None else "queue"
        if bus is not None and bus.wants(service, "policy"):
            bus.emit(
                service,
                "policy",
                f"{plugin} {action} in {hook}: {verdict.code} {verdict.text}".rstrip(),
                session=getattr(session, "session_id", ""),
                ip=getattr(session, "peer_ip", ""),
                user=getattr(session, "auth_user", None) or "",
            )

    def first_result(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> Any:
        """Run a synchronous hook; return the first non-``None`` answer (or ``None``)."""
        for active in self._active(hook, scope):
            result = self._call(active.impl, active.settings, kwargs)
            if result is not None:
                return result
        return None

    def all_results(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> list[Any]:
        """Run a synchronous hook; return every non-``None`` answer in plugin order."""
        out = []
        for active in self._active(hook, scope):
            result = self._call(active.impl, active.settings, kwargs)
            if result is not None:
                out.append(result)
        return out

    async def first_async(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> Any:
        """Run a hook that may be asynchronous; return the first non-``None`` answer."""
        _, result = await self.first_async_from(hook, scope, **kwargs)
        return result

    async def first_async_from(
        self, hook: str, scope: Scope = SYSTEM, **kwargs: Any
    ) -> tuple[str, Any]:
        """Like :meth:`first_async`, with the name of the plugin that answered (``""``: none)."""
        for active in self._active(hook, scope):
            ready, result = self._start(active, kwargs)
            if not ready:
                result = await result
            if result is not None:
                return active.plugin.name, result
        return "", None


def hookspecs_names() -> list[str]:
    """Every hook name of the contract, in declaration order."""
    return [name for name in vars(hookspecs.MailMaxHooks) if name.startswith("mailmax_")]


def load_plugin(name: str, settings: Mapping[str, Any] | None = None) -> LoadedPlugin:
    """Import a plugin by name (built-in, installed, or dotted module path) and check its
    system settings against its declared schema."""
    from mailmax.core.pluginhost import settings as schemas

    source = discovery.find(name)
    module = discovery.import_plugin(source)
    schema = schemas.schema_of(module)
    values, reserved = schemas.split_reserved(settings or {})
    try:
        checked = schemas.validate(name, schema, values)
    except schemas.SettingsError as exc:
        raise PluginError(str(exc)) from None
    return LoadedPlugin(
        name,
        module,
        checked,
        listeners=dict(reserved.get("listeners") or {}),
        schema=schema,
        origin=source.origin,
        detail=source.detail,
    )


def configure(plugin_set: PluginSet) -> None:
    """Run every plugin's ``mailmax_configure`` with its system settings; PluginError if one
    refuses."""
    for plugin, impl in plugin_set.implementations("mailmax_configure"):
        try:
            plugin_set._call(impl, plugin.settings, {})
        except Exception as exc:
            raise PluginError(f"plugin {plugin.name!r} refused its settings: {exc}") from exc


def build_plugin_set(
    enabled: Iterable[str], settings: Mapping[str, Mapping[str, Any]], *, host: Any = None
) -> PluginSet:
    """Load the named plugins, build the set (system scope only) and let each plugin validate
    its settings."""
    plugin_set = PluginSet((load_plugin(name, settings.get(name)) for name in enabled), host=host)
    configure(plugin_set)
    return plugin_set
