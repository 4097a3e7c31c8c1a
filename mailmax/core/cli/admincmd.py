"""``mailmax admin ...``: administrators of the admin API, their tokens and the audit log."""

from __future__ import annotations

import datetime

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column, to_data
from mailmax.core.services import admins as service
from mailmax.core.services.actor import Actor

ADMIN_COLUMNS = [Column("address", "ADMINISTRATOR"), Column("rights", "RIGHTS")]
TOKEN_COLUMNS = [
    Column("id", "ID"),
    Column("admin", "ADMINISTRATOR"),
    Column("name", "NAME"),
    Column("created", "CREATED"),
    Column("expires", "EXPIRES"),
    Column("last_used", "LAST USED"),
]
AUDIT_COLUMNS = [
    Column("at", "WHEN"),
    Column("actor", "WHO"),
    Column("origin", "FROM"),
    Column("action", "ACTION"),
    Column("target", "TARGET"),
]


def when(seconds: float | None) -> str:
    """A Unix time as UTC date and time ("" for None)."""
    if seconds is None:
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _rights(admin: service.Admin | None) -> str:
    if admin is None:
        return "none"
    parts = ["system"] if admin.system else []
    parts += [f"domain {d}" for d in admin.domains]
    return ", ".join(parts) or "none"


@click.group("admin")
def admin_group() -> None:
    """Administrators of the admin API, their API tokens and the audit log."""


@admin_group.command("list")
@common_options
def list_command() -> None:
    """List administrators and their rights."""
    state = app()
    admins = service.list_admins(state.directory(), Actor.local())
    rows = [{**to_data(a), "rights": _rights(a)} for a in admins]
    state.out.table(rows, ADMIN_COLUMNS, empty="no administrators")


def _domains_or_system(system: bool, domains: tuple[str, ...], verb: str) -> None:
    if system and domains:
        raise CLIError(f"{verb} either --system or --domain, not both")


@admin_group.command("grant")
@click.argument("address")
@click.option("--system", is_flag=True, help="System rights: everything.")
@click.option(
    "--domain", "domains", multiple=True, metavar="DOMAIN", help="A domain to administer (repeat)."
)
@common_options
def grant_command(address: str, system: bool, domains: tuple[str, ...]) -> None:
    """Make the user ADDRESS an administrator: of the whole system (--system) or of the
    domains given with --domain."""
    _domains_or_system(system, domains, "grant")
    if not system and not domains:
        raise CLIError("say what to grant: --system or --domain DOMAIN")
    state = app()
    admin = service.grant(state.directory(), Actor.local(), address, system=system, domains=domains)
    state.out.done(f"{admin.address} now administers: {_rights(admin)}", **to_data(admin))


@admin_group.command("revoke")
@click.argument("address")
@click.option("--system", is_flag=True, help="Take system rights only.")
@click.option(
    "--domain", "domains", multiple=True, metavar="DOMAIN", help="A domain to take (repeat)."
)
@common_options
def revoke_command(address: str, system: bool, domains: tuple[str, ...]) -> None:
    """Take rights from ADDRESS: system rights (--system), some domains (--domain), or
    everything, with its API tokens (neither option)."""
    _domains_or_system(system, domains, "revoke")
    state = app()
    left = service.revoke(state.directory(), Actor.local(), address, system=system, domains=domains)
    if left is None:
        state.out.done(f"{address.lower()} is no administrator any more", address=address.lower())
    else:
        state.out.done(f"{left.address} now administers: {_rights(left)}", **to_data(left))


@admin_group.group("token")
def token_group() -> None:
    """API tokens: made here, shown once, stored hashed."""


@token_group.command("create")
@click.argument("address")
@click.option("--name", required=True, help="What the token is for (shown in lists).")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    help="Expire after N days (default never).",
)
@common_options
def token_create_command(address: str, name: str, days: float | None) -> None:
    """Make an API token for the administrator ADDRESS and print it (it is not shown again)."""
    state = app()
    token, secret = service.create_token(state.directory(), Actor.local(), address, name, days)
    if state.out.as_json:
        state.out.done("token created", **to_data(token), token=secret)
        return
    click.echo(secret)
    click.echo(
        f"token {token.id} for {token.admin}: keep it now, it cannot be shown again; "
        "send it as `Authorization: Bearer <token>`",
        err=True,
    )


@token_group.command("list")
@click.option("--admin", "address", default="", metavar="ADDRESS", help="Only this one's tokens.")
@common_options
def token_list_command(address: str) -> None:
    """List API tokens (never their secret)."""
    state = app()
    tokens = service.list_tokens(state.directory(), Actor.local(), address)
    if state.out.as_json:
        state.out.json(tokens)
        return
    rows = [
        {**to_data(t), "created": when(t.created), "expires": when(t.expires) or "never",
         "last_used": when(t.last_used) or "never"}
        for t in tokens
    ]  # fmt: skip
    state.out.table(rows, TOKEN_COLUMNS, empty="no API tokens")


@token_group.command("revoke")
@click.argument("token_id", metavar="ID")
@common_options
def token_revoke_command(token_id: str) -> None:
    """Delete the API token ID (see `mailmax admin token list`); it stops working at once."""
    state = app()
    service.revoke_token(state.directory(), Actor.local(), token_id)
    state.out.done(f"revoked API token {token_id}", id=token_id)


@admin_group.command("audit")
@click.option("--who", default="", metavar="ACTOR", help="Only changes by ACTOR.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@common_options
def audit_command(who: str, limit: int) -> None:
    """Show the recorded changes, newest first: who, from where, what, when."""
    state = app()
    entries = service.audit_entries(state.directory(), Actor.local(), who=who, limit=limit)
    if state.out.as_json:
        state.out.json(entries)
        return
    rows = [{**to_data(e), "at": when(e.at)} for e in entries]
    state.out.table(rows, AUDIT_COLUMNS, empty="no recorded changes")
