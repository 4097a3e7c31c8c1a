"""``mailmax plugin ...``: list, show, switch and configure plugins per system, domain or user.

System scope is the config file (``[plugins] enabled`` and ``[plugins.settings.NAME]``; the
server applies it at the next ``mailmax reload``); domain and user scopes are overrides in the
directory (the server sees them within ``[server] directory_cache_seconds``).
"""

from __future__ import annotations

from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column
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

COLUMNS = [
    Column("name", "PLUGIN"),
    Column("status", "STATUS"),
    Column("origin", "FROM"),
    Column("scopes", "SCOPES"),
    Column("hooks", "HOOKS"),
]
RELOAD_HINT = "the server applies it at the next `mailmax reload`"

scope_options = [
    click.option("--domain", metavar="DOMAIN", help="Only for DOMAIN (an override)."),
    click.option("--user", metavar="ADDRESS", help="Only for the user ADDRESS (an override)."),
]


def with_scope(func: Any) -> Any:
    """Add ``--domain`` and ``--user``."""
    for option in reversed(scope_options):
        func = option(func)
    return func


def _source() -> OverrideSource:
    source = OverrideSource(app().directory())
    source.refresh(force=True)
    return source


def _load(name: str, source: OverrideSource | None = None) -> LoadedPlugin:
    settings = app().settings()
    system = builder.enabled_names(settings)
    try:
        return builder.load(
            name,
            settings.plugins.settings.get(name),
            builder.plugins_dir(settings),
            system_enabled=name in system,
            fresh=False,
        )
    except PluginError as exc:
        known = ", ".join(sorted(discovery.discover(builder.plugins_dir(settings)))) or "none"
        raise CLIError(f"{exc}; plugins found here: {known}") from None


def _scope(domain: str | None, user: str | None) -> tuple[str, str, Scope]:
    """``(kind, canonical name, Scope)``; kind is system, domain or user."""
    if domain and user:
        raise CLIError("give --domain or --user, not both")
    directory = app().directory()
    if user:
        found = directory.get_user(user)
        if found is None:
            raise CLIError(f"user {user} does not exist; see the users with `mailmax user list`")
        return "user", found.address, Scope(domain=found.domain, user=found.address)
    if domain:
        record = directory.get_domain(domain)
        if record is None:
            raise CLIError(
                f"domain {domain} does not exist; see the domains with `mailmax domain list`"
            )
        return "domain", record.name, Scope(domain=record.name)
    return "system", "", Scope()


def _check_scope(plugin: LoadedPlugin, kind: str) -> None:
    allowed = scopes_of(plugin.module)
    if kind not in allowed:
        hooks = [h for h in implemented_hooks(plugin.module) if h != "mailmax_configure"]
        raise CLIError(
            f"plugin {plugin.name} cannot be set per {kind}: it works per "
            f"{', '.join(allowed)} (its hooks {', '.join(hooks) or 'none'} never run with a "
            f"{kind} scope); nothing was changed"
        )


def _where(kind: str, name: str) -> str:
    return "system-wide" if kind == "system" else f"for {kind} {name}"


# ---------------------------------------------------------------------- commands
@click.group("plugin")
def plugin_group() -> None:
    """List, show, switch on or off and configure plugins (system, domain or user)."""


def _status(name: str, system: list[str], loaded: set[str]) -> str:
    if name in system:
        return "enabled"
    return "available" if name in loaded else "not loaded"


@plugin_group.command("list")
@click.option("--hooks", "show_hooks", is_flag=True, help="Also show, per hook, the run order.")
@common_options
def list_command(show_hooks: bool) -> None:
    """Every plugin: status, where its code comes from, its scopes and hooks.

    STATUS: enabled (system-wide), available (loaded switched off: on only where a domain or
    user switches it on), not loaded (found, not used). Hooks run in the order of the list.
    """
    state = app()
    settings = state.settings()
    source = _source()
    system = builder.enabled_names(settings)
    loaded = set(system) | set(settings.plugins.settings) | set(source.enabled_somewhere())
    found = discovery.discover(builder.plugins_dir(settings))
    order = system + sorted(loaded - set(system)) + sorted(set(found) - loaded)
    rows, modules = [], []
    for name in order:
        try:
            plugin = _load(name)
        except CLIError as exc:
            rows.append(
                {
                    "name": name,
                    "status": "error",
                    "origin": "-",
                    "scopes": [],
                    "hooks": [],
                    "error": str(exc),
                }
            )
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
    if state.as_json:
        state.out.json({"plugins": rows, "hooks": hooks if show_hooks else None})
        return
    state.out.table(rows, COLUMNS, empty="no plugins")
    for row in rows:
        if row["status"] == "error":
            click.echo(f"error: {row['error']}", err=True)
    if show_hooks:
        click.echo("")
        click.echo("Hook order (implementations run top to bottom; * = off system-wide):")
        for hook, names in hooks.items():
            marked = [n if n in system else f"{n}*" for n in names]
            click.echo(f"  {hook}: {', '.join(marked) if marked else '-'}")


@plugin_group.command("show")
@click.argument("name")
@with_scope
@common_options
def show_command(name: str, domain: str | None, user: str | None) -> None:
    """The effective on/off switch and settings of NAME, each with the scope it comes from."""
    state = app()
    kind, canonical, scope = _scope(domain, user)
    plugin = _load(name)
    try:
        report = ScopeStore(_source()).explain(plugin, scope)
    except PluginError as exc:
        raise CLIError(str(exc)) from None
    report["scope"] = "system" if kind == "system" else f"{kind} {canonical}"
    if state.as_json:
        state.out.json(report)
        return
    state_word = "enabled" if report["enabled"] else "disabled"
    click.echo(f"{name} {_where(kind, canonical)}: {state_word} (from {report['enabled_from']})")
    if not report["settings"]:
        click.echo("  (no settings)")
    for key, item in report["settings"].items():
        value = configedit.toml_value(item["value"]) if item["value"] is not None else "none"
        click.echo(f"  {key} = {value}    ({item['from']})")


def _switch(name: str, domain: str | None, user: str | None, on: bool) -> None:
    state = app()
    kind, canonical, _ = _scope(domain, user)
    plugin = _load(name)
    settings = state.settings()
    if kind == "system":
        names = builder.enabled_names(settings)
        if on and name not in names:
            names.append(name)
        elif not on and name in names:
            names.remove(name)
        check = _file_check(settings)
        configedit_call(lambda: configedit.set_enabled(state.config_path(), names, check))
        verb = "enabled" if on else "disabled"
        state.out.done(
            f"{name} {verb} system-wide in {state.config_path()}; {RELOAD_HINT}",
            plugin=name,
            scope="system",
            enabled=on,
        )
        return
    _check_scope(plugin, kind)
    source = _source()
    _, values = source.get(name).get((kind, canonical), (None, {}))
    _check_override(settings, name, (kind, canonical), on, dict(values))
    state.directory().set_plugin_override(name, kind, canonical, enabled=on, settings=dict(values))
    message = f"{name} {'enabled' if on else 'disabled'} for {kind} {canonical}"
    loaded = set(builder.enabled_names(settings)) | set(settings.plugins.settings)
    if on and name not in loaded | set(source.enabled_somewhere()):
        message += f"; the server loads {name} at the next `mailmax reload`"
    state.out.done(message, plugin=name, scope=kind, name=canonical, enabled=on)


def _refuse_new_problems(before: list[str], after: list[str]) -> None:
    added = builder.new_problems(before, after)
    if added:
        raise CLIError(
            "refused, nothing changed: a reload would fail with\n"
            + "\n".join(f"  {problem}" for problem in added)
        )


def _file_check(settings: Any) -> configedit.Check:
    """A check for a config-file edit: refuse it when the plugin set it gives has problems the
    current one has not (a plugin that cannot load or refuses its settings)."""
    directory = app().directory()
    before = builder.check(settings, directory)
    return lambda new: _refuse_new_problems(before, builder.check(new, directory))


def _check_override(
    settings: Any, name: str, scope: tuple[str, str], enabled: bool | None, values: dict
) -> None:
    """Refuse a directory override that would give the plugin set new problems."""
    directory = app().directory()
    before = builder.check(settings, directory)
    pending = builder.PendingOverride(directory, name, scope, enabled, values)
    _refuse_new_problems(before, builder.check(settings, source=pending))


def configedit_call(edit: Any) -> Any:
    """Run a config-file edit; its errors become CLI errors."""
    try:
        return edit()
    except configedit.EditError as exc:
        raise CLIError(str(exc)) from None


@plugin_group.command("enable")
@click.argument("name")
@with_scope
@common_options
def enable_command(name: str, domain: str | None, user: str | None) -> None:
    """Switch NAME on system-wide (config file), or for one domain or user (directory)."""
    _switch(name, domain, user, True)


@plugin_group.command("disable")
@click.argument("name")
@with_scope
@common_options
def disable_command(name: str, domain: str | None, user: str | None) -> None:
    """Switch NAME off system-wide, or for one domain or user (narrower scopes win)."""
    _switch(name, domain, user, False)


def _parse_pairs(plugin: LoadedPlugin, pairs: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"{pair!r}: write settings as key=value")
        if key in schemas.RESERVED_KEYS:
            raise CLIError(f"{key!r} is not a setting; use `mailmax plugin enable|disable`")
        if plugin.schema is not None and key not in plugin.schema.model_fields:
            raise CLIError(
                f"plugin {plugin.name} has no setting {key!r}; its settings:\n"
                + (schemas.allowed_keys(plugin.schema) or "  (none)")
            )
        values[key] = schemas.parse_value(plugin.schema, key, text)
    return values


def _layers(plugin: LoadedPlugin, kind: str, canonical: str, source: OverrideSource) -> list[dict]:
    """The raw settings of the layers from system down to ``kind`` (the last is that scope)."""
    system = dict(
        schemas.split_reserved(app().settings().plugins.settings.get(plugin.name) or {})[0]
    )
    layers = [system]
    overrides = source.get(plugin.name)
    if kind in ("domain", "user"):
        domain = canonical.rpartition("@")[2] if kind == "user" else canonical
        layers.append(dict(overrides.get(("domain", domain), (None, {}))[1]))
    if kind == "user":
        layers.append(dict(overrides.get(("user", canonical), (None, {}))[1]))
    return layers


def _change_settings(
    name: str, domain: str | None, user: str | None, changes: dict[str, Any]
) -> None:
    state = app()
    kind, canonical, _ = _scope(domain, user)
    plugin = _load(name)
    if kind != "system":
        _check_scope(plugin, kind)
    source = _source()
    layers = _layers(plugin, kind, canonical, source)
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
        schemas.validate(name, plugin.schema, merged, where)
    except schemas.SettingsError as exc:
        raise CLIError(str(exc)) from None
    if kind == "system":
        check = _file_check(state.settings())
        configedit_call(lambda: configedit.set_settings(state.config_path(), name, changes, check))
        state.out.done(
            f"{name} settings changed system-wide; {RELOAD_HINT}",
            plugin=name,
            scope="system",
            settings=own,
        )
        return
    enabled, _ = source.get(name).get((kind, canonical), (None, {}))
    _check_override(state.settings(), name, (kind, canonical), enabled, own)
    state.directory().set_plugin_override(name, kind, canonical, enabled=enabled, settings=own)
    state.out.done(
        f"{name} settings changed for {kind} {canonical}",
        plugin=name,
        scope=kind,
        name=canonical,
        settings=own,
    )


@plugin_group.command("set")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@with_scope
@common_options
def set_command(name: str, pairs: tuple[str, ...], domain: str | None, user: str | None) -> None:
    """Set settings of NAME (lists take commas: targets=a@x.example,b@y.example).

    A value the plugin does not allow, or that would make a reload fail, is refused with the
    reason, and nothing is written (exit status 1).
    """
    _change_settings(name, domain, user, _parse_pairs(_load(name), pairs))


@plugin_group.command("unset")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@with_scope
@common_options
def unset_command(name: str, keys: tuple[str, ...], domain: str | None, user: str | None) -> None:
    """Remove settings of NAME at this scope (the wider scope's value applies again)."""
    _change_settings(name, domain, user, dict.fromkeys(keys))


@plugin_group.command("check")
@common_options
def check_command() -> None:
    """Load every plugin and validate every setting and override, like a reload would."""
    state = app()
    problems = builder.check(state.settings(), state.directory())
    if state.as_json:
        state.out.json({"ok": not problems, "problems": problems})
    elif not problems:
        click.echo("OK: every plugin loads and every setting is valid")
    for problem in problems if not state.as_json else []:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.exceptions.Exit(1)
