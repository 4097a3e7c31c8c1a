"""``mailmax ban ...``: banned clients and senders, kept in the directory for the bans plugin.

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed.
"""

from __future__ import annotations

import time

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, warn
from mailmax.core.directory.errors import NotFound
from mailmax.core.services.actor import Actor
from mailmax.core.services.bans import BanAdmin, parse_expiry

COLUMNS = [
    Column("pattern", "BAN"),
    Column("kind", "KIND"),
    Column("where", "WHERE"),
    Column("cause", "CAUSE"),
    Column("added_at", "ADDED"),
    Column("expires_at", "EXPIRES"),
    Column("reason", "REASON"),
]


def admin() -> BanAdmin:
    """Ban administration for the person at this command line."""
    state = app()
    return BanAdmin(state.settings(), state.directory(), Actor.local())


def _warn_if_off(bans: BanAdmin) -> None:
    if not bans.plugin_enabled():
        warn(
            "the bans plugin is not enabled system-wide, so bans hold only where it is "
            "switched on; enable it with `mailmax plugin enable bans`"
        )


@click.group("ban")
def ban_group() -> None:
    """Ban clients (IP addresses, networks) and senders (addresses, domains, wildcards)."""


@ban_group.command("add")
@click.argument("pattern")
@click.option("--domain", metavar="DOMAIN", help="Ban the sender for DOMAIN's recipients only.")
@click.option("--listener", metavar="IP", help="Ban only on the listening address IP.")
@click.option(
    "--expires",
    metavar="WHEN",
    help="When the ban ends: a duration (30m, 12h, 7d) or a date and time (UTC). Default: never.",
)
@click.option("--reason", default="", help="Why (for admins; never shown to clients).")
@common_options
def add_command(
    pattern: str, domain: str | None, listener: str | None, expires: str | None, reason: str
) -> None:
    """Ban PATTERN: a client IP or network (192.0.2.7, 198.51.100.0/24, 2001:db8::/32), or a
    sender address or domain, with * and ? as wildcards (spam@bad.example, bad.example,
    *.bad.example, news-*@shop.example).

    Adding a ban that exists replaces its expiry and reason.
    """
    bans = admin()
    now = time.time()
    until = None if expires is None else parse_expiry(expires, now)
    record = bans.add(
        pattern, domain=domain, listener=listener, expires=until, reason=reason, now=now
    )
    _warn_if_off(bans)
    ending = f" until {record['expires_at']}" if until is not None else ""
    where = record["where"]
    app().out.done(f"banned {record['kind']} {record['pattern']} ({where}){ending}", **record)


@ban_group.command("list")
@click.option("--domain", metavar="DOMAIN", help="Only the bans of DOMAIN.")
@click.option("--listener", metavar="IP", help="Only the bans of the listening address IP.")
@click.option("--system", "system_only", is_flag=True, help="Only the system-wide bans.")
@click.option("--expired", is_flag=True, help="Also the bans that expired (until purged).")
@common_options
def list_command(
    domain: str | None, listener: str | None, system_only: bool, expired: bool
) -> None:
    """List the bans: what, where, why (by hand, spam trap, tarpit), when added, until when."""
    rows = admin().listing(
        domain=domain, listener=listener, system_only=system_only, expired=expired
    )
    app().out.table(rows, COLUMNS, empty="no bans")


@ban_group.command("delete")
@click.argument("pattern")
@click.option("--domain", metavar="DOMAIN", help="The ban is DOMAIN's.")
@click.option("--listener", metavar="IP", help="The ban is the listening address IP's.")
@common_options
def delete_command(pattern: str, domain: str | None, listener: str | None) -> None:
    """Lift the ban on PATTERN (system-wide, or of --domain or --listener)."""
    try:
        record = admin().delete(pattern, domain=domain, listener=listener)
    except NotFound as exc:
        raise CLIError(f"{exc}; see the bans with `mailmax ban list`") from None
    app().out.done(f"lifted the ban on {record['pattern']} ({record['where']})", **record)
