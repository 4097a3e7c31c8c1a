"""``mailmax ban ...``: banned clients and senders, kept in the directory for the bans plugin.

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import time
from functools import partial
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, warn

COLUMNS = [
    Column("pattern", "BAN"),
    Column("kind", "KIND"),
    Column("where", "WHERE"),
    Column("cause", "CAUSE"),
    Column("added_at", "ADDED"),
    Column("expires_at", "EXPIRES"),
    Column("reason", "REASON"),
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _bans() -> Any:
    """The plugin module, its store and patterns (imported when a ban command runs)."""
    import mailmax.plugins.bans as plugin

    return plugin


def _tables_ready() -> Any:
    """The directory's engine, with the bans table created or upgraded as the server would."""
    from mailmax.core.pluginhost.storage import migrate_tables

    engine = app().directory().engine
    plugin = _bans()
    migrate_tables(engine, plugin.NAME, plugin, plugin.TABLES)
    return engine


def _run(function: Any, *, write: bool = False) -> Any:
    from mailmax.core.directory.engine import transaction

    engine = _tables_ready()
    with transaction(engine, write=write) as connection:
        return function(connection)


def parse_expiry(text: str, now: float) -> float:
    """Clock seconds of an expiry given as a duration (``90s``, ``30m``, ``12h``, ``7d``,
    ``2w``) or a date and time (``2027-01-31``, ``2027-01-31T18:00``, UTC unless it says)."""
    value = text.strip().lower()
    match = _DURATION.match(value)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds <= 0:
            raise CLIError(f"--expires {text!r}: a ban must last longer than that")
        return now + seconds
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CLIError(
            f"--expires {text!r} is neither a duration (90s, 30m, 12h, 7d, 2w) nor a date "
            "and time (2027-01-31 or 2027-01-31T18:00, UTC unless it names a zone)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    when = moment.timestamp()
    if when <= now:
        raise CLIError(f"--expires {text!r} is in the past; nothing was changed")
    return when


def _moment(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(ban: Any) -> dict[str, Any]:
    where = "system" if ban.scope == "system" else f"{ban.scope} {ban.scope_value}"
    return {
        "id": ban.id,
        "pattern": ban.pattern,
        "kind": "client" if ban.kind == "ip" else "sender",
        "scope": ban.scope,
        "scope_value": ban.scope_value,
        "where": where,
        "cause": ban.cause,
        "reason": ban.reason,
        "added": ban.added,
        "added_at": _moment(ban.added),
        "expires": ban.expires,
        "expires_at": _moment(ban.expires),
    }


def _scope(domain: str | None, listener: str | None, kind: str) -> tuple[str, str]:
    from mailmax.plugins.bans import store
    from mailmax.plugins.bans.patterns import CLIENT

    if domain and listener:
        raise CLIError("give --domain or --listener, not both")
    if domain:
        if kind == CLIENT:
            raise CLIError(
                "a client IP or network is banned system-wide or per --listener; "
                "--domain takes sender addresses and domains"
            )
        from mailmax.core.cli.domains import find_domain

        return store.DOMAIN, find_domain(domain).name.lower()
    if listener:
        return store.LISTENER, _listener(listener)
    return store.SYSTEM, ""


def _listener(text: str) -> str:
    try:
        address = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CLIError(f"--listener {text!r} is not an IP address") from None
    addresses = sorted({item.address for item in app().settings().listeners})
    if address not in addresses:
        raise CLIError(
            f"no listener on {address}: a ban per listener would never hold; "
            f"the listening addresses are {', '.join(addresses) or '(none)'}"
        )
    return address


def _classify(pattern: str) -> tuple[str, str]:
    from mailmax.plugins.bans.patterns import classify

    try:
        return classify(pattern)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _warn_if_off() -> None:
    from mailmax.core.pluginhost.reload import enabled_names

    if _bans().NAME not in enabled_names(app().settings()):
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
    from mailmax.plugins.bans import store

    kind, normalized = _classify(pattern)
    scope, scope_value = _scope(domain, listener, kind)
    now = time.time()
    until = None if expires is None else parse_expiry(expires, now)
    add = partial(
        store.add,
        kind=kind,
        pattern=normalized,
        scope=scope,
        scope_value=scope_value,
        reason=reason,
        now=now,
        expires=until,
    )
    ban, _ = _run(add, write=True)
    _warn_if_off()
    record = _record(ban)
    ending = f" until {record['expires_at']}" if until is not None else ""
    app().out.done(f"banned {record['kind']} {normalized} ({record['where']}){ending}", **record)


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
    from mailmax.plugins.bans import store

    scope: str | None = None
    value: str | None = None
    if system_only:
        if domain or listener:
            raise CLIError("give one of --system, --domain and --listener")
        scope, value = store.SYSTEM, ""
    elif domain or listener:
        scope, value = _scope(domain, listener, "sender")
    query = partial(
        store.listing, now=time.time(), scope=scope, scope_value=value, include_expired=expired
    )
    rows = [_record(ban) for ban in _run(query)]
    app().out.table(rows, COLUMNS, empty="no bans")


@ban_group.command("delete")
@click.argument("pattern")
@click.option("--domain", metavar="DOMAIN", help="The ban is DOMAIN's.")
@click.option("--listener", metavar="IP", help="The ban is the listening address IP's.")
@common_options
def delete_command(pattern: str, domain: str | None, listener: str | None) -> None:
    """Lift the ban on PATTERN (system-wide, or of --domain or --listener)."""
    from mailmax.plugins.bans import store

    kind, normalized = _classify(pattern)
    scope, scope_value = _scope(domain, listener, kind)
    deleted = _run(
        lambda connection: store.delete(connection, kind, normalized, scope, scope_value),
        write=True,
    )
    if deleted is None:
        where = "system-wide" if scope == store.SYSTEM else f"for {scope} {scope_value}"
        raise CLIError(f"no ban on {normalized} {where}; see the bans with `mailmax ban list`")
    record = _record(deleted)
    app().out.done(f"lifted the ban on {normalized} ({record['where']})", **record)
