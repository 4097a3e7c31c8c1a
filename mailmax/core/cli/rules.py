"""``mailmax rule ...``: the rule lists of the system, of each domain and of each user.

Rules live in the directory; a running server sees a change within the rules plugin's
``refresh_seconds`` (2 s by default), without a reload.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, warn

COLUMNS = [
    Column("where", "LIST"),
    Column("position", "#"),
    Column("name", "NAME"),
    Column("state", "STATE"),
    Column("summary", "CONDITIONS -> ACTIONS"),
]


def _plugin() -> Any:
    import mailmax.plugins.rules as plugin

    return plugin


def _config() -> Any:
    """The rules plugin's system settings, from the config file."""
    plugin = _plugin()
    table = app().settings().plugins.settings.get(plugin.NAME, {})
    try:
        return plugin.Settings(**table)
    except ValueError as exc:
        raise CLIError(f"[plugins.settings.rules] in the config file: {exc}") from None


def _run(function: Any, *args: Any, write: bool = False) -> Any:
    from mailmax.core.directory.engine import transaction
    from mailmax.core.pluginhost.storage import migrate_tables

    plugin = _plugin()
    engine = app().directory().engine
    migrate_tables(engine, plugin.NAME, plugin, plugin.TABLES)
    with transaction(engine, write=write) as connection:
        return function(connection, *args)


def _scope(system: bool, domain: str | None, user: str | None) -> tuple[str, str]:
    if sum(bool(x) for x in (system, domain, user)) != 1:
        raise CLIError("give exactly one of --system, --domain DOMAIN and --user ADDRESS")
    if domain:
        from mailmax.core.cli.domains import find_domain

        return "domain", find_domain(domain).name.lower()
    if user:
        from mailmax.core.cli.users import find_user

        return "user", find_user(user).address.lower()
    return "system", ""


def scope_options(func: Any) -> Any:
    """--system, --domain and --user."""
    func = click.option("--user", metavar="ADDRESS", help="The user's own list.")(func)
    func = click.option("--domain", metavar="DOMAIN", help="The domain's list.")(func)
    return click.option("--system", is_flag=True, help="The system's list.")(func)


def _record(rule: Any) -> dict[str, Any]:
    record = rule.record()
    record["state"] = "enabled" if rule.enabled else "disabled"
    record["summary"] = " & ".join(record["conditions"]) + " -> " + "; ".join(record["actions"])
    return record


def _find(scope: str, value: str, name: str) -> Any:
    from mailmax.plugins.rules import store

    rule = _run(store.find, scope, value, name)
    if rule is None:
        where = scope if scope == "system" else f"{scope} {value}"
        raise CLIError(
            f"the {where} list has no rule {name!r}; see its rules with `mailmax rule list`"
        )
    return rule


def _make(scope: str, value: str, name: str, conditions: Any, actions: Any, **kw: Any) -> Any:
    from mailmax.plugins.rules.model import make_rule
    from mailmax.plugins.rules.syntax import RuleError

    config = _config()
    try:
        return make_rule(
            scope,
            value,
            name,
            list(conditions),
            list(actions),
            allowed_programs=config.allowed_programs,
            reply_folder=config.reply_folder,
            **kw,
        )
    except RuleError as exc:
        raise CLIError(f"{exc}; nothing was changed") from None


def _warn_if_off() -> None:
    from mailmax.core.pluginhost.reload import enabled_names

    if _plugin().NAME not in enabled_names(app().settings()):
        warn(
            "the rules plugin is not enabled system-wide, so rules run only where it is "
            "switched on; enable it with `mailmax plugin enable rules`"
        )


@click.group("rule")
def rule_group() -> None:
    """Rules: what happens to incoming mail (system, domain and user lists)."""


@rule_group.command("add")
@click.argument("name")
@scope_options
@click.option("--if", "conditions", multiple=True, metavar="CONDITION", help="A condition.")
@click.option("--then", "actions", multiple=True, metavar="ACTION", help="An action.")
@click.option("--position", type=int, default=0, help="Where in the list (1 first; default last).")
@click.option("--disabled", is_flag=True, help="Add it switched off.")
@common_options
def add_command(
    name: str,
    system: bool,
    domain: str | None,
    user: str | None,
    conditions: tuple[str, ...],
    actions: tuple[str, ...],
    position: int,
    disabled: bool,
) -> None:
    """Add the rule NAME: every --if must hold, then every --then is done.

    Conditions: any; size OP N (OP: = != < > <= >=, or between N M; 50k, 2m); date, weekday
    (1 Sunday .. 7 Saturday) and time OP VALUE (OP: on, not-on, on-or-before, before,
    on-or-after, after, between; YYYY-MM-DD, HH:MM); header NAME [not] exists; header NAME
    [not] contains [word] TEXT; body / text [not] contains [word] TEXT; attachment-name
    PATTERN; attachment-type TYPES (application/pdf,image/*,.exe); program PATH ARGS (%F or
    %M among ARGS).

    Actions: folder NAME; forward ADDRESS[,ADDRESS]; discard; discard-attachments; respond
    TEXT; respond-file NAME (a file in the reply folder); note TEXT; program PATH ARGS;
    terminate.
    """
    from mailmax.plugins.rules import store

    scope, value = _scope(system, domain, user)
    if position < 0:
        raise CLIError("--position counts from 1 (the first rule)")
    rule = _make(scope, value, name, conditions, actions, enabled=not disabled, position=position)
    try:
        saved = _run(store.save, rule, write=True)
    except ValueError as exc:
        raise CLIError(f"{exc}; nothing was changed") from None
    _warn_if_off()
    app().out.done(f"added rule {saved.name!r} to the {saved.where} list", **_record(saved))


@rule_group.command("list")
@scope_options
@common_options
def list_command(system: bool, domain: str | None, user: str | None) -> None:
    """List the rules (of one list, or of all lists), in the order they run."""
    from mailmax.plugins.rules import store

    if system or domain or user:
        rules = _run(store.listing, *_scope(system, domain, user))
    else:
        rules = _run(store.everything)
    app().out.table([_record(r) for r in rules], COLUMNS, empty="no rules")


@rule_group.command("show")
@click.argument("name")
@scope_options
@common_options
def show_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Show the rule NAME."""
    record = _record(_find(*_scope(system, domain, user), name))
    del record["summary"]
    app().out.record(record)


@rule_group.command("edit")
@click.argument("name")
@scope_options
@click.option("--name", "new_name", help="A new name.")
@click.option("--if", "conditions", multiple=True, metavar="CONDITION", help="New conditions.")
@click.option("--then", "actions", multiple=True, metavar="ACTION", help="New actions.")
@common_options
def edit_command(
    name: str,
    system: bool,
    domain: str | None,
    user: str | None,
    new_name: str | None,
    conditions: tuple[str, ...],
    actions: tuple[str, ...],
) -> None:
    """Change the rule NAME: --if replaces all its conditions, --then all its actions."""
    from mailmax.plugins.rules import store

    scope, value = _scope(system, domain, user)
    old = _find(scope, value, name)
    current = old.record()
    rule = _make(
        scope,
        value,
        new_name if new_name is not None else old.name,
        conditions or current["conditions"],
        actions or current["actions"],
        enabled=old.enabled,
    )
    try:
        saved = _run(lambda c: store.save(c, rule, old_name=old.name), write=True)
    except ValueError as exc:
        raise CLIError(f"{exc}; nothing was changed") from None
    app().out.done(f"changed rule {saved.name!r} of the {saved.where} list", **_record(saved))


@rule_group.command("move")
@click.argument("name")
@click.argument("position", type=int)
@scope_options
@common_options
def move_command(
    name: str, position: int, system: bool, domain: str | None, user: str | None
) -> None:
    """Move the rule NAME to POSITION in its list (1 first; past the end: last)."""
    from mailmax.plugins.rules import store

    if position < 1:
        raise CLIError("POSITION counts from 1 (the first rule)")
    scope, value = _scope(system, domain, user)
    _find(scope, value, name)
    moved = _run(store.move, scope, value, name, position, write=True)
    app().out.done(
        f"rule {name!r} is number {moved.position} of the {moved.where} list", **_record(moved)
    )


def _switch(name: str, scope: tuple[str, str], on: bool) -> None:
    from mailmax.plugins.rules import store

    rule = _find(*scope, name)
    state = "enabled" if on else "disabled"
    if rule.enabled == on:
        app().out.done(f"rule {name!r} was already {state}", changed=False, **_record(rule))
        return
    _run(store.set_enabled, *scope, name, on, write=True)
    app().out.done(f"rule {name!r} {state}", **_record(_find(*scope, name)))


@rule_group.command("enable")
@click.argument("name")
@scope_options
@common_options
def enable_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Switch the rule NAME on."""
    _switch(name, _scope(system, domain, user), True)


@rule_group.command("disable")
@click.argument("name")
@scope_options
@common_options
def disable_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Switch the rule NAME off (it stays in its list, at its place)."""
    _switch(name, _scope(system, domain, user), False)


@rule_group.command("delete")
@click.argument("name")
@scope_options
@common_options
def delete_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Delete the rule NAME; the rules after it move up."""
    from mailmax.plugins.rules import store

    scope, value = _scope(system, domain, user)
    rule = _find(scope, value, name)
    _run(store.delete, scope, value, name, write=True)
    app().out.done(f"deleted rule {name!r} of the {rule.where} list", **_record(rule))


def _moment(text: str | None, zone: str) -> datetime.datetime:
    plugin = _plugin()
    if text is None:
        return plugin.local_time(time.time(), zone)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise CLIError(f"--at {text!r} is not a date and time like 2027-01-31T18:00") from None
    if moment.tzinfo is None:
        local = plugin.local_time(time.time(), zone).tzinfo
        moment = moment.replace(tzinfo=local)
    return plugin.local_time(moment.timestamp(), zone)


@rule_group.command("test")
@click.option("--user", required=True, metavar="ADDRESS", help="The recipient.")
@click.option("--at", "at", metavar="WHEN", help="Pretend the message arrives then (server time).")
@click.argument(
    "messages",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@common_options
def test_command(user: str, at: str | None, messages: tuple[Path, ...]) -> None:
    """Run each MESSAGE file through the rules that apply to --user; change nothing.

    Prints which rules matched and what would be done. Test programs do run (in a temporary
    folder, removed afterwards): what they decide is part of the answer. With --json, one
    record per message.
    """
    from mailmax.plugins.rules import store
    from mailmax.plugins.rules.dryrun import dry_run

    config = _config()
    _, address = _scope(False, None, user)
    keys = _plugin().list_keys(address)
    found = _run(store.lists, keys)
    rules = [rule for key in keys for rule in found[key]]
    now = _moment(at, config.time_zone)
    scratch = app().settings().data_dir / "rules" / "run"
    records = []
    for path in messages:
        notes: list[str] = []
        plan = asyncio.run(dry_run(rules, path.read_bytes(), now, config, scratch, notes))
        records.append({"message": str(path), **plan.record(), "log": notes})
        app().out.lines(
            [f"{path}: rules for {address} at {now.isoformat(timespec='minutes')}:"]
            + [f"  {line}" for line in [*notes, *plan.lines()]]
        )
    _warn_if_off()
    if app().out.as_json:
        app().out.json({"user": address, "at": now.isoformat(), "messages": records})
