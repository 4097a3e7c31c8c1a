"""Which plugins run where, with which settings: system, listening address, domain, user.

The effective on/off switch and settings of a plugin for a scope are layered, the narrower
layer winning key by key (and for on/off, whenever it says anything):

1. the plugin's declared defaults;
2. system: ``[plugins] enabled`` and ``[plugins.settings.NAME]`` in the config file;
3. the listening address: ``[plugins.settings.NAME.listeners."ADDRESS"]`` (connection hooks
   and every hook of a session on that address);
4. the domain, then 5. the user: overrides in the directory (``mailmax plugin enable|disable|
   set NAME --domain D | --user U``).

:class:`OverrideSource` keeps every directory override in memory and re-reads them only when
the table changed (one cheap query per ``refresh``); the service refreshes it every
``[server] directory_cache_seconds`` in a thread, so hooks never wait on the database and a
change shows within that time. :class:`ScopeStore` answers ``(enabled, settings)`` for a plugin
set, caching validated settings per scope.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mailmax.core.hooks import LoadedPlugin, PluginError, Scope
from mailmax.core.pluginhost import settings as schemas

#: ``{(kind, name): (enabled or None, settings)}`` for one plugin.
Overrides = Mapping[tuple[str, str], tuple[bool | None, Mapping[str, Any]]]

_EMPTY: Overrides = {}


class OverrideSource:
    """Every plugin override of the directory, in memory; shared by the plugin sets of a
    service so sessions holding an older set see directory changes too."""

    def __init__(self, directory: Any = None) -> None:
        self.directory = directory
        #: Bumped whenever the overrides changed; caches compare it.
        self.generation = 0
        self._version: tuple[Any, ...] | None = None
        self._data: dict[str, Overrides] = {}
        self._lock = threading.Lock()

    def get(self, plugin: str) -> Overrides:
        """The overrides of ``plugin`` (empty when it has none)."""
        return self._data.get(plugin, _EMPTY)

    def names(self) -> list[str]:
        """Every plugin name that has an override."""
        return sorted(self._data)

    def enabled_somewhere(self) -> list[str]:
        """Plugin names some domain or user switches on."""
        return sorted(
            name
            for name, items in self._data.items()
            if any(enabled for enabled, _ in items.values())
        )

    def _read_version(self) -> tuple[Any, ...]:
        from mailmax.core.directory.schema import plugin_overrides as table

        query = sa.select(
            sa.func.count(), sa.func.max(table.c.updated), sa.func.sum(table.c.updated)
        )
        with self.directory.engine.connect() as conn:
            return tuple(conn.execute(query).one())

    def _read_all(self) -> dict[str, Overrides]:
        from mailmax.core.directory.schema import plugin_overrides as table

        with self.directory.engine.connect() as conn:
            names = conn.execute(sa.select(table.c.plugin).distinct()).scalars().all()
        return {name: self.directory.get_plugin_overrides(name) for name in names}

    def refresh(self, force: bool = False) -> bool:
        """Re-read the overrides if the table changed (blocking); True when they changed."""
        if self.directory is None:
            return False
        with self._lock:
            version = self._read_version()
            if not force and version == self._version:
                return False
            data = self._read_all()
            if self._read_version() != version:  # changed while reading: take it next time
                version = ()
            self._data, self._version = data, version
            self.generation += 1
            return True


@dataclass
class Layer:
    """One layer of a plugin's effective settings, for ``mailmax plugin show``."""

    source: str
    enabled: bool | None
    values: Mapping[str, Any] = field(default_factory=dict)


class ScopeStore:
    """The scope resolver of one plugin set (a :data:`~mailmax.core.hooks.ScopeResolver`)."""

    MAX_CACHED = 50_000

    def __init__(self, source: OverrideSource | None = None) -> None:
        self.source = source or OverrideSource()
        self._cache: dict[tuple[str, Scope], tuple[bool, Any]] = {}
        self._generation = -1

    @property
    def generation(self) -> int:
        """Changes whenever the directory's overrides were read afresh, so answers kept for
        an older generation are stale (the plugin set keeps its hooks' answers by it)."""
        return self.source.generation

    # ------------------------------------------------------------------ layers
    @staticmethod
    def _system_layer(plugin: LoadedPlugin) -> Layer:
        settings = plugin.settings
        if plugin.schema is not None and hasattr(settings, "model_fields_set"):
            values = {k: getattr(settings, k) for k in settings.model_fields_set}
        else:
            values = dict(settings)
        return Layer("system", plugin.system_enabled, values)

    def layers(self, plugin: LoadedPlugin, scope: Scope) -> list[Layer]:
        """The layers that apply to ``scope``, widest first (system first)."""
        out = [self._system_layer(plugin)]
        if scope.listener and scope.listener in plugin.listeners:
            raw = dict(plugin.listeners[scope.listener])
            enabled = raw.pop("enabled", None)
            out.append(Layer(f"listener {scope.listener}", enabled, raw))
        overrides = self.source.get(plugin.name)
        if overrides:
            if scope.domain and ("domain", scope.domain) in overrides:
                enabled, values = overrides[("domain", scope.domain)]
                out.append(Layer(f"domain {scope.domain}", enabled, values))
            if scope.user and ("user", scope.user) in overrides:
                enabled, values = overrides[("user", scope.user)]
                out.append(Layer(f"user {scope.user}", enabled, values))
        return out

    def effective(self, plugin: LoadedPlugin, scope: Scope) -> tuple[bool, Any]:
        """Compute (uncached) ``(enabled, settings)``; raises PluginError for bad settings."""
        layers = self.layers(plugin, scope)
        enabled = plugin.system_enabled
        merged: dict[str, Any] = {}
        for layer in layers:
            if layer.enabled is not None:
                enabled = bool(layer.enabled)
            merged.update(layer.values)
        if len(layers) == 1:
            return enabled, plugin.settings
        try:
            for layer in layers[1:]:
                schemas.check_scope_keys(plugin.name, plugin.schema, layer.values, layer.source)
            return enabled, schemas.validate(plugin.name, plugin.schema, merged, layers[-1].source)
        except schemas.SettingsError as exc:
            raise PluginError(str(exc)) from None

    def explain(self, plugin: LoadedPlugin, scope: Scope) -> dict[str, Any]:
        """Every effective setting with the layer it comes from (``default`` when none set it)."""
        layers = self.layers(plugin, scope)
        enabled_from = "system" if plugin.system_enabled else "system (not in [plugins] enabled)"
        enabled = plugin.system_enabled
        origin: dict[str, str] = {}
        for layer in layers:
            if layer.enabled is not None:
                enabled, enabled_from = bool(layer.enabled), layer.source
            for key in layer.values:
                origin[key] = layer.source
        _, settings = self.effective(plugin, scope)
        values = schemas.jsonable(settings)
        return {
            "plugin": plugin.name,
            "enabled": enabled,
            "enabled_from": enabled_from,
            "settings": {
                key: {"value": value, "from": origin.get(key, "default")}
                for key, value in values.items()
            },
        }

    # ------------------------------------------------------------------ resolving
    def scope_free(self, plugin: LoadedPlugin) -> bool:
        """True when ``plugin`` has no listener table and no domain or user override."""
        return not plugin.listeners and not self.source.get(plugin.name)

    def __call__(self, plugin: LoadedPlugin, scope: Scope) -> tuple[bool, Any]:
        """``(enabled, settings)`` of ``plugin`` in ``scope`` (the resolver protocol)."""
        if not plugin.listeners and not self.source.get(plugin.name):
            return plugin.system_enabled, plugin.settings
        if self._generation != self.source.generation:
            self._cache = {}
            self._generation = self.source.generation
        key = (plugin.name, scope)
        found = self._cache.get(key)
        if found is None:
            found = self.effective(plugin, scope)
            if len(self._cache) >= self.MAX_CACHED:
                self._cache = {}
            self._cache[key] = found
        return found

    def problems(self, plugins: Sequence[LoadedPlugin]) -> list[str]:
        """Every listener table and directory override that does not validate."""
        found = []
        for plugin in plugins:
            for address in plugin.listeners:
                try:
                    self.effective(plugin, Scope(listener=address))
                except PluginError as exc:
                    found.append(str(exc))
            allowed = scopes_of(plugin.module)
            for kind, name in self.source.get(plugin.name):
                if kind not in allowed:
                    found.append(
                        f"plugin {plugin.name} ({kind} {name}): it cannot be set per {kind}; "
                        f"it works per {', '.join(allowed)}"
                    )
                    continue
                scope = Scope(domain=name) if kind == "domain" else Scope(user=name)
                if kind == "user":
                    scope = Scope(domain=name.rpartition("@")[2], user=name)
                try:
                    self.effective(plugin, scope)
                except PluginError as exc:
                    found.append(str(exc))
        return found


ALL_SCOPES = ("system", "listener", "domain", "user")
#: The scopes each hook runs with (a hook missing here runs with the system scope only).
HOOK_SCOPES: dict[str, frozenset[str]] = {
    "mailmax_connect": frozenset({"system", "listener"}),
    "mailmax_helo": frozenset({"system", "listener"}),
    "mailmax_auth": frozenset(ALL_SCOPES),  # the user who proved their credentials
    # the authenticated local sender's domain and user
    "mailmax_mail_from": frozenset(ALL_SCOPES),
    "mailmax_rcpt_to": frozenset(ALL_SCOPES),
    "mailmax_rcpt_refused": frozenset({"system", "listener"}),
    "mailmax_data": frozenset(ALL_SCOPES),  # each recipient's
    "mailmax_message_accepted": frozenset(ALL_SCOPES),  # as mailmax_mail_from
    "mailmax_resolve_recipient": frozenset({"system", "domain"}),
    "mailmax_expand_recipient": frozenset({"system", "domain", "user"}),
    "mailmax_deliver": frozenset({"system", "domain", "user"}),
    "mailmax_route": frozenset({"system", "domain"}),
    "mailmax_transit": frozenset({"system", "domain"}),
    "mailmax_etrn": frozenset({"system", "listener", "domain"}),
}
#: Hooks that run for a connection: system and listening-address scopes only.
CONNECTION_HOOKS = frozenset(h for h, s in HOOK_SCOPES.items() if s == {"system", "listener"})


def implemented_hooks(plugin_object: Any) -> list[str]:
    """The hook names a plugin module (or object) implements."""
    return sorted(
        name
        for name in dir(plugin_object)
        if name.startswith("mailmax_")
        and getattr(getattr(plugin_object, name, None), "mailmax_impl", None) is not None
    )


def honoured_scopes(hooks: Sequence[str]) -> set[str]:
    """Every scope at least one of ``hooks`` runs with."""
    found = {"system"}
    for hook in hooks:
        found |= HOOK_SCOPES.get(hook, frozenset())
    return found


def check_declared_scopes(name: str, plugin_object: Any) -> None:
    """Refuse (PluginError, saying why) a declared ``SCOPES`` the plugin's hooks cannot honour."""
    declared = getattr(plugin_object, "SCOPES", None)
    if declared is None:
        return
    if isinstance(declared, str) or not all(isinstance(s, str) for s in declared):
        raise PluginError(f"plugin {name!r}: SCOPES must be a tuple of names such as 'domain'")
    unknown = [s for s in declared if s not in ALL_SCOPES]
    if unknown:
        raise PluginError(
            f"plugin {name!r}: unknown scope {unknown[0]!r} in SCOPES; use {', '.join(ALL_SCOPES)}"
        )
    hooks = [h for h in implemented_hooks(plugin_object) if h != "mailmax_configure"]
    honoured = honoured_scopes(hooks) | _task_scopes(plugin_object)
    for scope in declared:
        if scope not in honoured:
            raise PluginError(
                f"plugin {name!r} declares the {scope} scope, but none of its hooks "
                f"({', '.join(hooks) or 'none'}) runs with a {scope} scope: a {scope} "
                f"setting would never take effect (see the scopes of each hook in the "
                f"plugin guide)"
            )


def scopes_of(plugin_object: Any) -> tuple[str, ...]:
    """Where a plugin can be switched and configured: its ``SCOPES``, else every scope one of
    its hooks runs with."""
    declared = getattr(plugin_object, "SCOPES", None)
    if declared:
        return tuple(s for s in ALL_SCOPES if s in declared)
    hooks = set(implemented_hooks(plugin_object)) - {"mailmax_configure"}
    found = honoured_scopes(sorted(hooks)) | _task_scopes(plugin_object)
    return tuple(s for s in ALL_SCOPES if s in found)


def _task_scopes(plugin_object: Any) -> set[str]:
    """The scopes a plugin's scheduled tasks honour (they ask for a scope's settings)."""
    from mailmax.core.pluginhost import schedule

    return set(schedule.SCOPED_TASK_SCOPES) if schedule.takes_scopes(plugin_object) else set()
