"""``mailmax plugin ...``: list, show, switch and configure plugins per system, domain or user.

System scope is the config file (``[plugins] enabled`` and ``[plugins.settings.NAME]``; the
server applies it at the next ``mailmax reload``); domain and user scopes are overrides in the
directory (the server sees them within ``[server] directory_cache_seconds``). The work is done by
:class:`mailmax.core.services.plugins.PluginAdmin`, which the admin API uses too.
"""

from __future__ import annotations

from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column
from mailmax.core.pluginhost import configedit
from mailmax.core.services.actor import Actor
from mailmax.core.services.plugins import PluginAdmin

COLUMNS = [
    Column("name", "PLUGIN"),
    Column("status", "STATUS"),
    Column("origin", "FROM"),
    Column("scopes", "SCOPES"),
    Column("hooks", "HOOKS"),
]

scope_options = [
    click.option("--domain", metavar="DOMAIN", help="Only for DOMAIN (an override)."),
    click.option("--user", metavar="ADDRESS", help="Only for the user ADDRESS (an override)."),
]


def with_scope(func: Any) -> Any:
    """Add ``--domain`` and ``--user``."""
    for option in reversed(scope_options):
        func = option(func)
    return func


def plugin_admin() -> PluginAdmin:
    """Plugin administration for the person at this command line."""
    state = app()
    return PluginAdmin(state.settings(), state.directory(), Actor.local())


def _where(kind: str, name: str) -> str:
    return "system-wide" if kind == "system" else f"for {kind} {name}"


# ---------------------------------------------------------------------- commands
@click.group("plugin")
def plugin_group() -> None:
    """List, show, switch on or off and configure plugins (system, domain or user)."""


@plugin_group.command("list")
@click.option("--hooks", "show_hooks", is_flag=True, help="Also show, per hook, the run order.")
@common_options
def list_command(show_hooks: bool) -> None:
    """Every plugin: status, where its code comes from, its scopes and hooks.

    STATUS: enabled (system-wide), available (loaded switched off: on only where a domain or
    user switches it on), not loaded (found, not used). Hooks run in the order of the list.
    """
    state = app()
    rows, hooks, system = plugin_admin().listing()
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
    report = plugin_admin().show(name, domain, user)
    kind, _, canonical = report["scope"].partition(" ")
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
    message, data = plugin_admin().switch(name, domain, user, on)
    app().out.done(message, **data)


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


def _parse_pairs(name: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    texts: dict[str, str] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"{pair!r}: write settings as key=value")
        texts[key] = text
    return plugin_admin().parse_values(name, texts)


def change_settings(
    name: str, domain: str | None, user: str | None, changes: dict[str, Any]
) -> None:
    """Set (None: remove) settings of plugin ``name`` at a scope and say what changed."""
    message, data = plugin_admin().change_settings(name, domain, user, changes)
    app().out.done(message, **data)


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
    change_settings(name, domain, user, _parse_pairs(name, pairs))


@plugin_group.command("unset")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@with_scope
@common_options
def unset_command(name: str, keys: tuple[str, ...], domain: str | None, user: str | None) -> None:
    """Remove settings of NAME at this scope (the wider scope's value applies again)."""
    change_settings(name, domain, user, dict.fromkeys(keys))


@plugin_group.command("check")
@common_options
def check_command() -> None:
    """Load every plugin and validate every setting and override, like a reload would."""
    state = app()
    problems = plugin_admin().check()
    if state.as_json:
        state.out.json({"ok": not problems, "problems": problems})
    elif not problems:
        click.echo("OK: every plugin loads and every setting is valid")
    for problem in problems if not state.as_json else []:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.exceptions.Exit(1)
