"""``mailmax access ...``: connection control rules, kept in the directory for the access plugin.

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed. ``list`` also shows the rules the configuration implies (``[smtp]
trusted_networks``, ``[connections] exempt_networks``), tried after the stored ones.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, warn

COLUMNS = [
    Column("where", "LIST"),
    Column("position", "#"),
    Column("pattern", "ADDRESSES"),
    Column("kind", "KIND"),
    Column("flags", "FLAGS"),
    Column("source", "FROM"),
    Column("comment", "COMMENT"),
]
KIND_CHOICE = click.Choice(["permitted", "trusted", "banned", "custom"], case_sensitive=False)


def _plugin() -> Any:
    """The plugin module (imported when an access command runs)."""
    import mailmax.plugins.access as plugin

    return plugin


def _run(function: Any, *, write: bool = False) -> Any:
    from mailmax.core.directory.engine import transaction
    from mailmax.core.pluginhost.storage import migrate_tables

    engine = app().directory().engine
    plugin = _plugin()
    migrate_tables(engine, plugin.NAME, plugin, plugin.TABLES)
    with transaction(engine, write=write) as connection:
        return function(connection)


def _listener(text: str | None) -> str:
    """The listening address of ``--listener`` (checked against the configuration), or ""."""
    if text is None:
        return ""
    try:
        address = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CLIError(f"--listener {text!r} is not an IP address") from None
    addresses = sorted({item.address for item in app().settings().listeners})
    if address not in addresses:
        raise CLIError(
            f"no listener on {address}: its rules would never hold; "
            f"the listening addresses are {', '.join(addresses) or '(none)'}"
        )
    return address


def _pattern(text: str) -> str:
    from mailmax.plugins.access.rules import parse_pattern

    try:
        return parse_pattern(text).text
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _record(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.id,
        "where": rule.where,
        "listener": rule.listener,
        "position": rule.position,
        "pattern": rule.pattern,
        "kind": rule.kind,
        "flags": list(rule.flags),
        "source": "directory",
        "comment": rule.comment,
    }


def _implied() -> list[dict[str, Any]]:
    """The configuration's rules, as ``list`` shows them (after the system-wide list)."""
    from mailmax.core.clientrights import config_rules

    settings = app().settings()
    out = []
    for position, (name, network, rights) in enumerate(config_rules(settings), start=1):
        kind = "trusted" if rights.trusted else "custom"
        section, key = name.split(".")
        written = key in getattr(settings, section).model_fields_set
        where = f"in {settings.source}" if written and settings.source else "(its default)"
        out.append(
            {
                "id": None,
                "where": "config",
                "listener": "",
                "position": position,
                "pattern": _pattern(network),
                "kind": kind,
                "flags": [] if rights.trusted else ["exempt-from-connection-limits"],
                "source": f"[{section}] {key} {where}",
                "comment": "",
            }
        )
    return out


def _warn_if_off() -> None:
    from mailmax.core.pluginhost.reload import enabled_names

    if _plugin().NAME not in enabled_names(app().settings()):
        warn(
            "the access plugin is not enabled system-wide, so these rules hold only where it "
            "is switched on; enable it with `mailmax plugin enable access`"
        )


def _missing(pattern: str, listener: str) -> CLIError:
    where = f"for listener {listener}" if listener else "system-wide"
    for row in _implied():
        if row["pattern"] == pattern and not listener:
            return CLIError(
                f"{pattern} is not a stored rule: it comes from {row['source']}; "
                "set that in the config file instead (then `mailmax reload`)"
            )
    return CLIError(f"no rule for {pattern} {where}; see the rules with `mailmax access list`")


@click.group("access")
def access_group() -> None:
    """Connection control: ordered IP rules, first match wins (system-wide and per listener)."""


@access_group.command("add")
@click.argument("pattern")
@click.argument("kind", type=KIND_CHOICE)
@click.option(
    "--flag",
    "flags",
    multiple=True,
    metavar="FLAG",
    help="A custom rule's right (repeat it): no-open-relay-check, allow-relaying, "
    "local-mail-only, no-auth-required, exempt-from-connection-limits.",
)
@click.option("--listener", metavar="IP", help="The list of the listening address IP.")
@click.option(
    "--position", type=click.IntRange(min=1), help="Its place in the list (1: tried first)."
)
@click.option("--comment", default="", help="A note for admins (never shown to clients).")
@common_options
def add_command(
    pattern: str,
    kind: str,
    flags: tuple[str, ...],
    listener: str | None,
    position: int | None,
    comment: str,
) -> None:
    """Add a rule for PATTERN (192.0.2.7, 192.0.2.1-20, 192.0.*.*, 198.51.100.0/24,
    2001:db8::/32) of KIND: permitted, trusted, banned or custom (with --flag).

    A new rule goes last in its list unless --position says otherwise; adding a rule for a
    PATTERN the list has changes that rule (and moves it only with --position).
    """
    from mailmax.plugins.access import store
    from mailmax.plugins.access.rules import check_flags

    normalized = _pattern(pattern)
    try:
        checked = check_flags(kind.lower(), [f for flag in flags for f in flag.split(",")])
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    where = _listener(listener)

    def add(connection: Any) -> Any:
        return store.add(connection, where, normalized, kind.lower(), checked, comment, position)

    try:
        rule, added = _run(add, write=True)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    _warn_if_off()
    verb = "added" if added else "changed"
    app().out.done(
        f"{verb} rule {rule.position} of the {rule.where} list: {normalized} {rule.kind}"
        + (f" ({', '.join(rule.flags)})" if rule.flags else ""),
        **_record(rule),
    )


@access_group.command("list")
@click.option("--listener", metavar="IP", help="Only the list of the listening address IP.")
@click.option("--system", "system_only", is_flag=True, help="Only the system-wide list.")
@common_options
def list_command(listener: str | None, system_only: bool) -> None:
    """List the rules in the order they are tried: each listener's list (for its clients),
    the system-wide list, then the rules the configuration implies."""
    from mailmax.plugins.access import store

    if listener and system_only:
        raise CLIError("give --listener or --system, not both")
    rules = _run(store.all_rules)
    if listener:
        where = _listener(listener)
        rows = [_record(r) for r in rules if r.listener == where]
    else:
        ordered = [r for r in rules if r.listener] + [r for r in rules if not r.listener]
        rows = [_record(r) for r in ordered if not system_only or not r.listener]
        rows += _implied()
    app().out.table(rows, COLUMNS, empty="no rules")


@access_group.command("move")
@click.argument("pattern")
@click.argument("position", type=click.IntRange(min=1))
@click.option("--listener", metavar="IP", help="The rule is in the list of listener IP.")
@common_options
def move_command(pattern: str, position: int, listener: str | None) -> None:
    """Move the rule for PATTERN to POSITION in its list (1: tried first)."""
    from mailmax.plugins.access import store

    normalized = _pattern(pattern)
    where = _listener(listener)
    rule = _run(lambda c: store.move(c, where, normalized, position), write=True)
    if rule is None:
        raise _missing(normalized, where)
    app().out.done(
        f"moved {normalized} to {rule.position} in the {rule.where} list", **_record(rule)
    )


@access_group.command("delete")
@click.argument("pattern")
@click.option("--listener", metavar="IP", help="The rule is in the list of listener IP.")
@common_options
def delete_command(pattern: str, listener: str | None) -> None:
    """Delete the rule for PATTERN (system-wide, or of --listener)."""
    from mailmax.plugins.access import store

    normalized = _pattern(pattern)
    where = _listener(listener)
    rule = _run(lambda c: store.delete(c, where, normalized), write=True)
    if rule is None:
        raise _missing(normalized, where)
    app().out.done(f"deleted the rule for {normalized} ({rule.where})", **_record(rule))
