"""Build a complete plugin set from the configuration: the unit a load or reload swaps in.

:func:`build` finds every plugin, imports its code (afresh on a reload), validates its system
and listener settings and every directory override against its declared schema, runs its
``mailmax_configure`` and returns the new, immutable :class:`~mailmax.core.hooks.PluginSet`.
Anything wrong raises :class:`~mailmax.core.hooks.PluginError` with every problem found, and
the caller keeps the set it has: a failed reload changes nothing. That includes a plugin
switched on only for some domain, user or listener: one that cannot load fails the whole
build, so a policy never stays off unnoticed.

Plugin order (the order hooks run in): the order of ``[plugins] enabled``; then, by name, the
plugins loaded switched off system-wide: those with a ``[plugins.settings.NAME]`` table but not
in the list, and those some domain or user switches on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mailmax.core.config import Settings
from mailmax.core.hooks import (
    DEFAULT_ENABLED,
    LoadedPlugin,
    PluginError,
    PluginSet,
    configure,
)
from mailmax.core.pluginhost import discovery, scopes
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.pluginhost.scopes import OverrideSource, ScopeStore


def enabled_names(settings: Settings) -> list[str]:
    """The system-wide plugin list: ``[plugins] enabled``, or the built-in default list when
    the file does not set it."""
    if "enabled" in settings.plugins.model_fields_set:
        return list(settings.plugins.enabled)
    return list(DEFAULT_ENABLED)


def plugins_dir(settings: Settings) -> Path:
    """The local plugins directory (``[plugins] directory`` inside the data directory)."""
    return settings.path(settings.plugins.directory)


def load(
    name: str, raw: Any, plugins_directory: Path | None, *, system_enabled: bool, fresh: bool
) -> LoadedPlugin:
    """Import one plugin and validate its system and listener settings."""
    source = discovery.find(name, plugins_directory)
    module = discovery.import_plugin(source, fresh=fresh)
    scopes.check_declared_scopes(name, module)
    schema = schemas.schema_of(module)
    if raw is not None and not isinstance(raw, dict):
        raise PluginError(f"[plugins.settings.{name}] must be a table, not {raw!r}")
    values, reserved = schemas.split_reserved(raw or {})
    if "enabled" in reserved:
        raise PluginError(
            f"[plugins.settings.{name}] enabled: the system switch is the [plugins] enabled "
            "list; `enabled` belongs in a listener table"
        )
    listeners = reserved.get("listeners") or {}
    if not isinstance(listeners, dict) or not all(isinstance(v, dict) for v in listeners.values()):
        raise PluginError(
            f"[plugins.settings.{name}.listeners] must hold one table per listening address"
        )
    try:
        checked = schemas.validate(name, schema, values)
    except schemas.SettingsError as exc:
        raise PluginError(str(exc)) from None
    if listeners and "listener" not in scopes.scopes_of(module):
        raise PluginError(
            f"[plugins.settings.{name}.listeners]: plugin {name} cannot be set per listening "
            f"address; it works per {', '.join(scopes.scopes_of(module))}"
        )
    for address, table in listeners.items():
        if "enabled" in table and not isinstance(table["enabled"], bool):
            raise PluginError(f"plugin {name} (listener {address}): enabled must be true or false")
    return LoadedPlugin(
        name,
        module,
        checked,
        system_enabled=system_enabled,
        listeners={address: dict(table) for address, table in listeners.items()},
        schema=schema,
        origin=source.origin,
        detail=source.detail or discovery.module_file(module),
    )


def build(
    settings: Settings,
    *,
    source: OverrideSource | None = None,
    host: Any = None,
    fresh: bool = False,
    extra: Iterable[str] = (),
) -> PluginSet:
    """The plugin set ``settings`` describe (see the module documentation).

    ``source`` supplies the directory overrides (it is refreshed here, so validation sees the
    current ones); ``fresh`` re-imports plugin code from disk; ``extra`` names plugins to load
    switched off system-wide (besides those some domain or user switches on).
    """
    source = source or OverrideSource()
    source.refresh(force=True)
    system = enabled_names(settings)
    duplicates = sorted({n for n in system if system.count(n) > 1})
    if duplicates:
        raise PluginError(f"[plugins] enabled lists {', '.join(duplicates)} more than once")
    wanted = set(source.enabled_somewhere()) | set(extra) | set(settings.plugins.settings)
    others = sorted(wanted - set(system))
    directory = plugins_dir(settings)
    problems: list[str] = []
    loaded: list[LoadedPlugin] = []
    for name, on in [(n, True) for n in system] + [(n, False) for n in others]:
        try:
            loaded.append(
                load(
                    name,
                    settings.plugins.settings.get(name),
                    directory,
                    system_enabled=on,
                    fresh=fresh,
                )
            )
        except PluginError as exc:
            problems.append(_where_on(name, system, source, exc))
    if problems:
        raise PluginError("\n".join(problems))
    store = ScopeStore(source)
    problems = store.problems(loaded)
    if problems:
        raise PluginError("\n".join(problems))
    plugin_set = PluginSet(loaded, store, host=host)
    plugin_set.scopes = store
    configure(plugin_set)
    return plugin_set


def _where_on(name: str, system: list[str], source: OverrideSource, exc: PluginError) -> str:
    """The problem of a plugin that cannot load, saying where it is switched on."""
    if name in system:
        return str(exc)
    places = [
        f"{kind} {scope}"
        for (kind, scope), (enabled, _) in sorted(source.get(name).items())
        if enabled
    ]
    if not places:
        return str(exc)
    return f"{exc} (plugin {name} is switched on for {', '.join(places)})"


def check(
    settings: Settings, directory: Any = None, *, source: OverrideSource | None = None
) -> list[str]:
    """Every plugin problem of ``settings`` and the directory's overrides (or those of
    ``source``), for ``mailmax config check`` and the CLI's edits; empty when all is well."""
    from mailmax.core.pluginhost import lifecycle

    try:
        plugin_set = build(settings, source=source or OverrideSource(directory), fresh=False)
    except PluginError as exc:
        return str(exc).splitlines()
    return lifecycle.check(plugin_set)


class PendingOverride(OverrideSource):
    """The directory's overrides plus one not written yet, to check a change before making it."""

    def __init__(
        self,
        directory: Any,
        plugin: str,
        scope: tuple[str, str],
        enabled: bool | None,
        values: dict[str, Any],
    ) -> None:
        super().__init__(directory)
        self._pending = (plugin, scope, (enabled, dict(values)))

    def refresh(self, force: bool = False) -> bool:
        """Re-read the directory's overrides, then lay the pending one over them."""
        changed = super().refresh(force)
        plugin, scope, value = self._pending
        data = dict(self._data)
        data[plugin] = {**data.get(plugin, {}), scope: value}
        self._data = data
        return changed


def new_problems(before: list[str], after: list[str]) -> list[str]:
    """The problems of ``after`` that ``before`` did not have (a change's own problems)."""
    known = set(before)
    return [problem for problem in after if problem not in known]
