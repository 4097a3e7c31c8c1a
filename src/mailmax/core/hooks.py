"""The plugin set and the driver that runs policy hooks asynchronously, in order.

pluggy registers plugins and validates their hook implementations against
:mod:`mailmax.core.hookspecs`; MailMax walks the implementations itself because policy hooks may
return Deferreds (pluggy's ``firstresult`` would stop at the first Deferred it sees).

A :class:`PluginSet` is immutable once built: a session takes the current set when it starts and
keeps it, so swapping in a new set (a reload) never changes a transaction in flight.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core import hookspecs, verdicts
from mailmax.core.verdicts import Verdict

log = Logger(namespace="mailmax.plugins")

#: Built-in plugins, by name: the module that implements each.
BUILTIN_PLUGINS: dict[str, str] = {}


@dataclass(frozen=True)
class Scope:
    """Where a hook runs: the system, or narrowed to a domain and a user (``user@domain``)."""

    domain: str | None = None
    user: str | None = None
    listener: str | None = None


SYSTEM = Scope()


@dataclass(frozen=True)
class LoadedPlugin:
    """One plugin in a set: its name, module and system-level settings."""

    name: str
    module: ModuleType
    settings: Mapping[str, Any] = field(default_factory=dict)


#: Looks up the effective (enabled, settings) of a plugin for a scope; the default is system-only.
ScopeResolver = Callable[[LoadedPlugin, Scope], "tuple[bool, Mapping[str, Any]]"]


def _system_only(plugin: LoadedPlugin, scope: Scope) -> tuple[bool, Mapping[str, Any]]:
    return True, plugin.settings


class PluginError(Exception):
    """A plugin could not be loaded or refused its configuration."""


class PluginSet:
    """An immutable, ordered set of loaded plugins and the means to run their hooks."""

    def __init__(
        self, plugins: Iterable[LoadedPlugin], resolver: ScopeResolver = _system_only
    ) -> None:
        self.plugins: tuple[LoadedPlugin, ...] = tuple(plugins)
        self._resolver = resolver
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs.MailMaxHooks)
        self._by_module: dict[int, LoadedPlugin] = {}
        for plugin in self.plugins:
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

    def _active(
        self, hook: str, scope: Scope
    ) -> list[tuple[LoadedPlugin, pluggy.HookImpl, Mapping[str, Any]]]:
        out = []
        for plugin, impl in self.implementations(hook):
            enabled, settings = self._resolver(plugin, scope)
            if enabled:
                out.append((plugin, impl, settings))
        return out

    @staticmethod
    def _call(impl: pluggy.HookImpl, settings: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        if "config" in impl.argnames:
            args["config"] = settings
        return impl.function(**args)

    # ------------------------------------------------------------------ running hooks
    def run_policy(
        self, hook: str, scope: Scope = SYSTEM, **kwargs: Any
    ) -> defer.Deferred[Verdict]:
        """Run a policy hook; fire with the first decisive verdict or ``cont()``.

        A plugin that raises (or fires an errback, or returns something that is not a verdict)
        is logged with its name and turns into a temporary failure, so nothing is accepted that
        a policy would have refused.
        """
        active = self._active(hook, scope)
        if not active:
            return defer.succeed(verdicts.cont())
        return defer.ensureDeferred(self._chain(hook, active, kwargs))

    async def _chain(self, hook: str, active: list, kwargs: Mapping[str, Any]) -> Verdict:
        for plugin, impl, settings in active:
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
        for _plugin, impl, settings in self._active(hook, scope):
            result = self._call(impl, settings, kwargs)
            if isinstance(result, defer.Deferred) or inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None


def load_plugin(name: str, settings: Mapping[str, Any] | None = None) -> LoadedPlugin:
    """Import a plugin by name (built-in name or dotted module path)."""
    module_name = BUILTIN_PLUGINS.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"plugin {name!r} cannot be imported ({exc})") from exc
    return LoadedPlugin(name, module, dict(settings or {}))


def build_plugin_set(
    enabled: Iterable[str], settings: Mapping[str, Mapping[str, Any]]
) -> PluginSet:
    """Load the named plugins, build the set and let each plugin validate its settings."""
    plugin_set = PluginSet(load_plugin(name, settings.get(name)) for name in enabled)
    for plugin, impl in plugin_set.implementations("mailmax_configure"):
        try:
            PluginSet._call(impl, plugin.settings, {})
        except Exception as exc:
            raise PluginError(f"plugin {plugin.name!r} refused its settings: {exc}") from exc
    return plugin_set
