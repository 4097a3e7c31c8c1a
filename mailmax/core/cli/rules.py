"""``mailmax rule ...``: the rule lists of the system, of each domain and of each user.

Rules live in the directory; a running server sees a change within the rules plugin's
``refresh_seconds`` (2 s by default), without a reload.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, warn
from mailmax.core.services.actor import Actor
from mailmax.core.services.rules import RuleAdmin, rule_record

COLUMNS = [
    Column("where", "LIST"),
    Column("position", "#"),
    Column("name", "NAME"),
    Column("state", "STATE"),
    Column("summary", "CONDITIONS -> ACTIONS"),
]


def admin() -> RuleAdmin:
    """Rule administration for the person at this command line."""
    state = app()
    return RuleAdmin(state.settings(), state.directory(), Actor.local())


def scope_options(func: Any) -> Any:
    """--system, --domain and --user."""
    func = click.option("--user", metavar="ADDRESS", help="The user's own list.")(func)
    func = click.option("--domain", metavar="DOMAIN", help="The domain's list.")(func)
    return click.option("--system", is_flag=True, help="The system's list.")(func)


def _warn_if_off(rules: RuleAdmin) -> None:
    if not rules.plugin_enabled():
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
    rules = admin()
    record = rules.add(rules.scope(system, domain, user), name, conditions, actions,
                       position=position, enabled=not disabled)  # fmt: skip
    _warn_if_off(rules)
    app().out.done(f"added rule {record['name']!r} to the {record['where']} list", **record)


@rule_group.command("list")
@scope_options
@common_options
def list_command(system: bool, domain: str | None, user: str | None) -> None:
    """List the rules (of one list, or of all lists), in the order they run."""
    rules = admin()
    scope = rules.scope(system, domain, user) if system or domain or user else None
    app().out.table(rules.listing(scope), COLUMNS, empty="no rules")


@rule_group.command("show")
@click.argument("name")
@scope_options
@common_options
def show_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Show the rule NAME."""
    rules = admin()
    record = rule_record(rules.find(rules.scope(system, domain, user), name))
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
    rules = admin()
    record = rules.edit(rules.scope(system, domain, user), name, new_name=new_name,
                        conditions=conditions, actions=actions)  # fmt: skip
    app().out.done(f"changed rule {record['name']!r} of the {record['where']} list", **record)


@rule_group.command("move")
@click.argument("name")
@click.argument("position", type=int)
@scope_options
@common_options
def move_command(
    name: str, position: int, system: bool, domain: str | None, user: str | None
) -> None:
    """Move the rule NAME to POSITION in its list (1 first; past the end: last)."""
    if position < 1:
        raise CLIError("POSITION counts from 1 (the first rule)")
    rules = admin()
    moved = rules.move(rules.scope(system, domain, user), name, position)
    app().out.done(
        f"rule {name!r} is number {moved['position']} of the {moved['where']} list", **moved
    )


def _switch(name: str, system: bool, domain: str | None, user: str | None, on: bool) -> None:
    rules = admin()
    record, changed = rules.switch(rules.scope(system, domain, user), name, on)
    state = "enabled" if on else "disabled"
    if not changed:
        app().out.done(f"rule {name!r} was already {state}", changed=False, **record)
        return
    app().out.done(f"rule {name!r} {state}", **record)


@rule_group.command("enable")
@click.argument("name")
@scope_options
@common_options
def enable_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Switch the rule NAME on."""
    _switch(name, system, domain, user, True)


@rule_group.command("disable")
@click.argument("name")
@scope_options
@common_options
def disable_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Switch the rule NAME off (it stays in its list, at its place)."""
    _switch(name, system, domain, user, False)


@rule_group.command("delete")
@click.argument("name")
@scope_options
@common_options
def delete_command(name: str, system: bool, domain: str | None, user: str | None) -> None:
    """Delete the rule NAME; the rules after it move up."""
    rules = admin()
    record = rules.delete(rules.scope(system, domain, user), name)
    app().out.done(f"deleted rule {name!r} of the {record['where']} list", **record)


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
    rules = admin()
    answer = rules.test(user, [path.read_bytes() for path in messages], at)
    address = answer["user"]
    when = datetime.datetime.fromisoformat(answer["at"]).isoformat(timespec="minutes")
    records = []
    for path, result in zip(messages, answer["messages"], strict=True):
        lines = result.pop("lines")
        records.append({"message": str(path), **result})
        app().out.lines([f"{path}: rules for {address} at {when}:"] + [f"  {x}" for x in lines])
    _warn_if_off(rules)
    if app().out.as_json:
        app().out.json({"user": address, "at": answer["at"], "messages": records})
