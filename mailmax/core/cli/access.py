"""``mailmax access ...``: connection control rules, kept in the directory for the access plugin.

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed. ``list`` also shows the rules the configuration implies (``[smtp]
trusted_networks``, ``[connections] exempt_networks``), tried after the stored ones.
"""

from __future__ import annotations

import click

from mailmax.core.cli.context import app, common_options
from mailmax.core.cli.output import Column, warn
from mailmax.core.services.access import AccessAdmin
from mailmax.core.services.actor import Actor

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


def admin() -> AccessAdmin:
    """Access rule administration for the person at this command line."""
    state = app()
    return AccessAdmin(state.settings(), state.directory(), Actor.local())


def _warn_if_off(access: AccessAdmin) -> None:
    if not access.plugin_enabled():
        warn(
            "the access plugin is not enabled system-wide, so these rules hold only where it "
            "is switched on; enable it with `mailmax plugin enable access`"
        )


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
    access = admin()
    record, added = access.add(
        pattern, kind, flags=flags, listener=listener, position=position, comment=comment
    )
    _warn_if_off(access)
    verb = "added" if added else "changed"
    app().out.done(
        f"{verb} rule {record['position']} of the {record['where']} list: "
        f"{record['pattern']} {record['kind']}"
        + (f" ({', '.join(record['flags'])})" if record["flags"] else ""),
        **record,
    )


@access_group.command("list")
@click.option("--listener", metavar="IP", help="Only the list of the listening address IP.")
@click.option("--system", "system_only", is_flag=True, help="Only the system-wide list.")
@common_options
def list_command(listener: str | None, system_only: bool) -> None:
    """List the rules in the order they are tried: each listener's list (for its clients),
    the system-wide list, then the rules the configuration implies."""
    rows = admin().listing(listener=listener, system_only=system_only)
    app().out.table(rows, COLUMNS, empty="no rules")


@access_group.command("move")
@click.argument("pattern")
@click.argument("position", type=click.IntRange(min=1))
@click.option("--listener", metavar="IP", help="The rule is in the list of listener IP.")
@common_options
def move_command(pattern: str, position: int, listener: str | None) -> None:
    """Move the rule for PATTERN to POSITION in its list (1: tried first)."""
    record = admin().move(pattern, position, listener=listener)
    app().out.done(
        f"moved {record['pattern']} to {record['position']} in the {record['where']} list",
        **record,
    )


@access_group.command("delete")
@click.argument("pattern")
@click.option("--listener", metavar="IP", help="The rule is in the list of listener IP.")
@common_options
def delete_command(pattern: str, listener: str | None) -> None:
    """Delete the rule for PATTERN (system-wide, or of --listener)."""
    record = admin().delete(pattern, listener=listener)
    app().out.done(f"deleted the rule for {record['pattern']} ({record['where']})", **record)
