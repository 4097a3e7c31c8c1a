"""Plugins per scope: list, show, switch on or off and configure (the CLI and the API).

System scope is the config file (``[plugins] enabled`` and ``[plugins.settings.NAME]``; the
server applies it at the next reload); domain and user scopes are overrides in the directory
(the server sees them within ``[server] directory_cache_seconds``). A change that would make a
reload fail is refused with the reason, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmax.core.directory.errors import DirectoryError, NotFound
from mailmax.core.hooks import LoadedPlugin, PluginError, Scope, hookspecs_names
from mailmax.core.pluginhost import configedit, discovery
from mailmax.core.pluginhost import reload as builder
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.pluginhost.scopes import (
    OverrideSource,
    ScopeStore,
    implemented_hooks,
    scopes_of,
)
from mailmax.core.services.actor import Actor, audit

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory

RELOAD_HINT = "the server applies it at the next `mailmax reload`"


class PluginRefused(DirectoryError):
    """A plugin change cannot be made as asked; nothing was changed."""


def _status(name: str, system: list[str], loaded: set[str]) -> str:
    if name in system:
        return "enabled"
    return "available" if name in loaded else "not loaded"


class PluginAdmin:
    """Plugin administration for ``actor`` on the system of ``settings`` and ``directory``."""

    def __init__(self, settings: Settings, directory: SQLDirectory, actor: Actor) -> None:
        self.settings = settings
        self.directory = directory
        self.actor = actor

    @property
    def config_path(self) -> Path:
        """The config file system-scope changes are written to."""
        return Path(self.settings.source)

    def source(self) -> OverrideSource:
        """The domain and user overrides, fresh from the directory."""
        source = OverrideSource(self.directory)
        source.refresh(force=True)
        return source

    def load(self, name: str) -> LoadedPlugin:
        """The plugin ``name`` loaded with its system settings; NotFound naming those found."""
        settings = self.settings
        try:
            return builder.load(
                name,
                settings.plugins.settings.get(name),
                builder.plugins_dir(settings),
                system_enabled=name in builder.enabled_names(settings),
                fresh=False,
            )
        except PluginError as exc:
            found = discovery.discover(builder.plugins_dir(settings))
            known = ", ".join(sorted(found)) or "none"
            error = NotFound if name not in found else PluginRefused
            raise error(f"{exc}; plugins found here: {known}") from None

    def scope(self, domain: str | None, user: str | None) -> tuple[str, str, Scope]:
        """``(kind, canonical name, Scope)``; kind is system, domain or user."""
        from mailmax.core.services.domains import get_domain
        from mailmax.core.services.users import require_address

        if domain and user:
            raise PluginRefused("give --domain or --user, not both")
        if user:
            require_address(self.directory, self.actor, user)
            found = self.directory.get_user(user)
            if found is None:
                raise NotFound(f"user {user} does not exist")
            return "user", found.address, Scope(domain=found.domain, user=found.address)
        if domain:
            record = get_domain(self.directory, self.actor, domain)
            return "domain", record.name, Scope(domain=record.name)
        return "system", "", Scope()

    @staticmethod
    def check_scope(plugin: LoadedPlugin, kind: str) -> None:
        """Refuse a scope the plugin's hooks never run with."""
        allowed = scopes_of(plugin.module)
        if kind not in allowed:
            hooks = [h for h in implemented_hooks(plugin.module) if h != "mailmax_configure"]
            raise PluginRefused(
                f"plugin {plugin.name} cannot be set per {kind}: it works per "
                f"{', '.join(allowed)} (its hooks {', '.join(hooks) or 'none'} never run with "
                f"a {kind} scope); nothing was changed"
            )

    # ------------------------------------------------------------------ reading
    def listing(self) -> tuple[list[dict[str, Any]], dict[str, list[str]], list[str]]:
        """(a row per plugin, the hook order of the loaded ones, the system enable list)."""
        settings = self.settings
        source = self.source()
        system = builder.enabled_names(settings)
        loaded = set(system) | set(settings.plugins.settings) | set(source.enabled_somewhere())
        found = discovery.discover(builder.plugins_dir(settings))
        order = system + sorted(loaded - set(system)) + sorted(set(found) - loaded)
        rows, modules = [], []
        for name in order:
            try:
                plugin = self.load(name)
            except DirectoryError as exc:
                rows.append({"name": name, "status": "error", "origin": "-", "scopes": [],
                             "hooks": [], "error": str(exc)})  # fmt: skip
                continue
            origin = plugin.origin + (f" ({plugin.detail})" if plugin.detail else "")
            rows.append(
                {
                    "name": name,
                    "status": _status(name, system, loaded),
                    "origin": origin,
                    "scopes": list(scopes_of(plugin.module)),
                    "hooks": [h.removeprefix("mailmax_") for h in implemented_hooks(plugin.module)],
                }
            )
            if name in loaded:
                modules.append((name, plugin.module))
        hooks = {
            hook: [name for name, module in modules if hook in implemented_hooks(module)]
            for hook in hookspecs_names()
        }
        return rows, hooks, system

    def show(self, name: str, domain: str | None, user: str | None) -> dict[str, Any]:
        """The effective switch and settings of ``name`` at a scope, each with its origin."""
        kind, canonical, scope = self.scope(domain, user)
        if kind == "system":
            self.actor.require_system("reading system plugin settings")
        plugin = self.load(name)
        source = self.source()
        try:
            report = ScopeStore(source).explain(plugin, scope)
        except PluginError as exc:
            raise PluginRefused(str(exc)) from None
        _, own = source.get(name).get((kind, canonical), (None, {}))
        for key, (value, origin) in self.directory_held(plugin, kind, canonical).items():
            if key in own:
                origin += f" (the user's own setting {key} is not used: unset it)"
            report["settings"][key] = {"value": value, "from": origin}
        report["scope"] = "system" if kind == "system" else f"{kind} {canonical}"
        return report

    def directory_held(
        self, plugin: LoadedPlugin, kind: str, canonical: str
    ) -> dict[str, tuple[Any, str]]:
        """The settings of ``plugin`` that the user's directory record holds (an LDAP
        attribute), each with where it comes from: they replace the plugin's own settings."""
        held = getattr(plugin.module, "directory_settings", None)
        if kind != "user" or held is None:
            return {}
        user = self.directory.get_user(canonical)
        return dict(held(user)) if user is not None else {}

    # ------------------------------------------------------------------ changing
    def _refuse_new_problems(self, before: list[str], after: list[str]) -> None:
        added = builder.new_problems(before, after)
        if added:
            raise PluginRefused(
                "refused, nothing changed: a reload would fail with\n"
                + "\n".join(f"  {problem}" for problem in added)
            )

    def _file_check(self) -> configedit.Check:
        before = builder.check(self.settings, self.directory)
        return lambda new: self._refuse_new_problems(before, builder.check(new, self.directory))

    def _check_override(
        self, name: str, scope: tuple[str, str], enabled: bool | None, values: dict
    ) -> None:
        before = builder.check(self.settings, self.directory)
        pending = builder.PendingOverride(self.directory, name, scope, enabled, values)
        self._refuse_new_problems(before, builder.check(self.settings, source=pending))

    @staticmethod
    def _edit(edit: Any) -> Any:
        try:
            return edit()
        except configedit.EditError as exc:
            raise PluginRefused(str(exc)) from None

    def switch(
        self, name: str, domain: str | None, user: str | None, on: bool
    ) -> tuple[str, dict[str, Any]]:
        """Switch ``name`` on or off at a scope: (the sentence saying so, the change)."""
        kind, canonical, _ = self.scope(domain, user)
        plugin = self.load(name)
        verb = "enabled" if on else "disabled"
        if kind == "system":
            self.actor.require_system("switching a plugin system-wide")
            # The file as it is now: a running server's settings lag until its next reload.
            from mailmax.core.config import load

            names = builder.enabled_names(load(self.config_path))
            if on and name not in names:
                names.append(name)
            elif not on and name in names:
                names.remove(name)
            check = self._file_check()
            self._edit(lambda: configedit.set_enabled(self.config_path, names, check))
            audit(self.directory, self.actor, f"plugin.{verb[:-1]}", name, scope="system")
            message = f"{name} {verb} system-wide in {self.config_path}; {RELOAD_HINT}"
            return message, {"plugin": name, "scope": "system", "enabled": on}
        self.check_scope(plugin, kind)
        source = self.source()
        _, values = source.get(name).get((kind, canonical), (None, {}))
        self._check_override(name, (kind, canonical), on, dict(values))
        self.directory.set_plugin_override(name, kind, canonical, enabled=on, settings=dict(values))
        audit(self.directory, self.actor, f"plugin.{verb[:-1]}", name, scope=kind, name=canonical)
        message = f"{name} {verb} for {kind} {canonical}"
        settings = self.settings
        loaded = set(builder.enabled_names(settings)) | set(settings.plugins.settings)
        if on and name not in loaded | set(source.enabled_somewhere()):
            message += f"; the server loads {name} at the next `mailmax reload`"
        return message, {"plugin": name, "scope": kind, "name": canonical, "enabled": on}

    def _layers(self, plugin: LoadedPlugin, kind: str, canonical: str, source: Any) -> list[dict]:
        """The raw settings of the layers from system down to ``kind`` (the last is that
        scope)."""
        raw = self.settings.plugins.settings.get(plugin.name) or {}
        layers = [dict(schemas.split_reserved(raw)[0])]
        overrides = source.get(plugin.name)
        if kind in ("domain", "user"):
            domain = canonical.rpartition("@")[2] if kind == "user" else canonical
            layers.append(dict(overrides.get(("domain", domain), (None, {}))[1]))
        if kind == "user":
            layers.append(dict(overrides.get(("user", canonical), (None, {}))[1]))
        return layers

    def parse_values(self, name: str, texts: dict[str, str]) -> dict[str, Any]:
        """Settings given as text (``key -> "value"``, lists with commas), parsed and checked
        against the plugin's settings."""
        plugin = self.load(name)
        values: dict[str, Any] = {}
        for key, text in texts.items():
            self._check_key(plugin, key)
            values[key] = schemas.parse_value(plugin.schema, key, text)
        return values

    @staticmethod
    def _check_key(plugin: LoadedPlugin, key: str) -> None:
        if key in schemas.RESERVED_KEYS:
            raise PluginRefused(f"{key!r} is not a setting; use `mailmax plugin enable|disable`")
        if plugin.schema is not None and key not in plugin.schema.model_fields:
            raise PluginRefused(
                f"plugin {plugin.name} has no setting {key!r}; its settings:\n"
                + (schemas.allowed_keys(plugin.schema) or "  (none)")
            )

    def change_settings(
        self, name: str, domain: str | None, user: str | None, changes: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Set (a None value: remove) settings of ``name`` at a scope."""
        kind, canonical, _ = self.scope(domain, user)
        plugin = self.load(name)
        for key in changes:
            self._check_key(plugin, key)
        if kind != "system":
            self.check_scope(plugin, kind)
        else:
            self.actor.require_system("changing system plugin settings")
        held = self.directory_held(plugin, kind, canonical)
        for key, value in changes.items():
            if key in held and value is not None:
                raise PluginRefused(
                    f"{name} {key} of {canonical} come from {held[key][1]}: change them there;"
                    " nothing was changed"
                )
        source = self.source()
        layers = self._layers(plugin, kind, canonical, source)
        own = layers[-1]
        for key, value in changes.items():
            if value is None:
                own.pop(key, None)
            else:
                own[key] = value
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        where = "system" if kind == "system" else f"{kind} {canonical}"
        try:
            if kind != "system":
                schemas.check_scope_keys(name, plugin.schema, own, where)
            schemas.validate(name, plugin.schema, merged, where)
        except schemas.SettingsError as exc:
            raise PluginRefused(str(exc)) from None
        if kind == "system":
            check = self._file_check()
            self._edit(lambda: configedit.set_settings(self.config_path, name, changes, check))
            audit(self.directory, self.actor, "plugin.settings", name, scope="system",
                  changes=changes)  # fmt: skip
            message = f"{name} settings changed system-wide; {RELOAD_HINT}"
            return message, {"plugin": name, "scope": "system", "settings": own}
        enabled, _ = source.get(name).get((kind, canonical), (None, {}))
        self._check_override(name, (kind, canonical), enabled, own)
        self.directory.set_plugin_override(name, kind, canonical, enabled=enabled, settings=own)
        audit(self.directory, self.actor, "plugin.settings", name, scope=kind, name=canonical,
              changes=changes)  # fmt: skip
        message = f"{name} settings changed for {kind} {canonical}"
        return message, {"plugin": name, "scope": kind, "name": canonical, "settings": own}

    def check(self) -> list[str]:
        """Every problem a reload would meet (system administrators only)."""
        self.actor.require_system("checking every plugin")
        return builder.check(self.settings, self.directory)
