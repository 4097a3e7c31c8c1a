"""The plugin set and the driver that runs policy hooks asynchronously, in order.

pluggy registers plugins and validates their hook implementations against
:mod:`mailmax.core.hookspecs`; MailMax walks the implementations itself because policy hooks may
return Deferreds (pluggy's ``firstresult`` would stop at the first Deferred it sees).

A :class:`PluginSet` is immutable once built: a session takes the current set when it starts and
keeps it, so swapping in a new set (a reload) never changes a transaction in flight.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
#: Resolvers run before the catch-all; spam traps decide before forwarding delivers.
DEFAULT_ENABLED: tuple[str, ...] = (
    "bans",
    "aliases",
    "spamtrap",
    "forwarding",
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

    def scope_free(self, hook: str) -> bool:
        """True when no implementation of ``hook`` is switched or set narrower than the
        system (then every scope gets the same plugins and settings)."""
        check = getattr(self._resolver, "scope_free", None)
        if check is None:
            return self._resolver is _system_only
        return all(check(plugin) for plugin, _ in self.implementations(hook))

    def _active(
        self, hook: str, scope: Scope
    ) -> list[tuple[LoadedPlugin, pluggy.HookImpl, Mapping[str, Any]]]:
        out = []
        for plugin, impl in self.implementations(hook):
            enabled, settings = self.resolve(plugin, scope)
            if enabled:
                out.append((plugin, impl, settings))
        return out

    def _call(
        self, impl: pluggy.HookImpl, settings: Mapping[str, Any], kwargs: Mapping[str, Any]
    ) -> Any:
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
        return defer.ensureDeferred(self._chain(hook, active, kwargs))

    async def _chain(self, hook: str, active: list, kwargs: Mapping[str, Any]) -> Verdict:
        changes = kwargs.get("changes")
        for plugin, impl, settings in active:
            if changes is not None:
                changes.begin(plugin.name)
            try:
                result = self._call(impl, settings, kwargs)
                if isinstance(result, defer.Deferred) or inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.failure("plugin {plugin} failed in {hook}", plugin=plugin.name, hook=hook)
                return verdicts.tempfail(
                    "Local error in policy check, try again later", 451, "4.3.0"
                ).with_plugin(plugin.name)
            if result is None:
                continue
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
                return result.with_plugin(plugin.name)
        return verdicts.cont()

    async def notify(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> None:
        """Run a notification hook: every enabled implementation in order, each awaited;
        answers are ignored and a plugin that fails is logged, never passed on."""
        try:
            active = self._active(hook, scope)
        except PluginError as exc:
            log.error("{hook} not run: {error}", hook=hook, error=str(exc))
            return
        for plugin, impl, settings in active:
            try:
                result = self._call(impl, settings, kwargs)
                if isinstance(result, defer.Deferred) or inspect.isawaitable(result):
                    await result
            except Exception:
                log.failure("plugin {plugin} failed in {hook}", plugin=plugin.name, hook=hook)

    def first_result(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> Any:
        """Run a synchronous hook; return the first non-``None`` answer (or ``None``)."""
        for _plugin, impl, settings in self._active(hook, scope):
            result = self._call(impl, settings, kwargs)
            if result is not None:
                return result
        return None

    def all_results(self, hook: str, scope: Scope = SYSTEM, **kwargs: Any) -> list[Any]:
        """Run a synchronous hook; return every non-``None`` answer in plugin order."""
        out = []
        for _plugin, impl, settings in self._active(hook, scope):
            result = self._call(impl, settings, kwargs)
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
        for plugin, impl, settings in self._active(hook, scope):
            result = self._call(impl, settings, kwargs)
            if isinstance(result, defer.Deferred) or inspect.isawaitable(result):
                result = await result
            if result is not None:
                return plugin.name, result
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
