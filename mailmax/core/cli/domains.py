"""``mailmax domain ...``: list, add, show, edit and delete domains; domain aliases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options, refuse_not_enforced
from mailmax.core.cli.deleting import delete_flow, mode_option, yes_option
from mailmax.core.cli.output import Column, to_data
from mailmax.core.cli.sendinglimits import warn_if_not_enforced
from mailmax.core.directory.api import BlankPasswordPolicy, Domain, DomainType
from mailmax.core.services import domains as service
from mailmax.core.services.actor import Actor

_COUNT = click.IntRange(min=0)

#: option name -> (Domain field, click option); shared by ``add`` and ``edit``.
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "type_": ("type", click.option(
        "--type", "type_", type=click.Choice([t.value for t in DomainType]),
        help="normal, etrn (held for ETRN), relay (all mail to --delivery-host) or "
        "backup (backup MX, needs --backup-priority); clustered is not enforced yet.")),
    "delivery_host": ("delivery_host", click.option(
        "--delivery-host", metavar="HOST", help="Relay domains: the host all mail goes to.")),
    "backup_priority": ("backup_priority", click.option(
        "--backup-priority", type=_COUNT, metavar="N",
        help="Backup domains: our MX preference (not zero).")),
    "home_node": ("home_node", click.option(
        "--home-node", metavar="NODE", hidden=True,
        help="Clustered domains: the node its users live on.")),
    "catch_all": ("catch_all", click.option(
        "--catch-all", metavar="USER",
        help="Existing user (name or name@domain) receiving mail for unknown names "
        "('' to turn off).")),
    "monitor": ("monitor", click.option(
        "--monitor", metavar="USER",
        help="Existing user (name or name@domain) receiving a copy of all the domain's mail "
        "('' to turn off).")),
    "max_message_size": ("max_message_size", click.option(
        "--max-message-size", type=_COUNT, metavar="BYTES",
        help="Largest message in bytes (0: the system limit).")),
    "default_box_mb": ("default_box_mb", click.option(
        "--default-box-mb", type=_COUNT, metavar="N",
        help="Default mailbox size of new users in MB (0: unlimited).")),
    "max_users": ("max_users", click.option(
        "--max-users", type=_COUNT, metavar="N", help="Most users (0: unlimited).")),
    "session_send_mb": ("session_send_mb", click.option(
        "--session-send-mb", type=_COUNT, metavar="N",
        help="MB one of its users may send per authenticated session (0: unlimited).")),
    "session_send_messages": ("session_send_messages", click.option(
        "--session-send-messages", type=_COUNT, metavar="N",
        help="Messages one of its users may send per authenticated session (0: unlimited).")),
    "blank_password": ("blank_password", click.option(
        "--blank-password", type=click.Choice([p.value for p in BlankPasswordPolicy]),
        help="What a blank password means: system (the system default), fill (the next "
        "password used becomes it), none (no password needed), disable (no login).")),
    "over_limit_notice": ("over_limit_notice", click.option(
        "--over-limit-notice", type=click.Choice(["none", "percent", "mb"]), hidden=True,
        help="Warn users near their limit: none, percent left, or MB left.")),
    "over_limit_threshold": ("over_limit_threshold", click.option(
        "--over-limit-threshold", type=_COUNT, metavar="N", hidden=True,
        help="Percent or MB left that triggers the notice.")),
}  # fmt: skip

_ENUMS: dict[str, Callable[[str], Any]] = {
    "type": DomainType,
    "blank_password": BlankPasswordPolicy,
}

COLUMNS = [
    Column("name", "DOMAIN"),
    Column("type", "TYPE"),
    Column("aliases", "ALIASES"),
    Column("mail_dir", "MAIL DIRECTORY"),
]


def field_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add every domain field option to a command."""
    for _field, option in reversed(_FIELDS.values()):
        func = option(func)
    return func


#: Options kept so that scripts get a clear refusal: the server does not enforce them yet.
NOT_ENFORCED = {
    "home_node": "--home-node",
    "over_limit_notice": "--over-limit-notice",
    "over_limit_threshold": "--over-limit-threshold",
}


def given_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The Domain fields named by the options actually given on the command line."""
    refuse_not_enforced(options, NOT_ENFORCED)
    if options.get("type_") == DomainType.CLUSTERED.value:
        refuse_not_enforced({"type": "clustered"}, {"type": "--type clustered"})
    fields = {}
    for param, value in options.items():
        if value is None or param not in _FIELDS:
            continue
        name = _FIELDS[param][0]
        fields[name] = _ENUMS[name](value) if name in _ENUMS else value
    warn_if_not_enforced(fields, ("session_send_mb", "session_send_messages"))
    return fields


def find_domain(name: str) -> Domain:
    """The domain ``name`` (or the domain it is an alias of); NotFound when there is none."""
    return service.get_domain(app().directory(), Actor.local(), name)


def mail_path(mail_dir: str) -> Path:
    """A domain's mail directory as an absolute path (relative ones are in the data directory)."""
    return service.mail_path(app().settings(), mail_dir)


@click.group("domain")
def domain_group() -> None:
    """Manage domains."""


@domain_group.command("list")
@click.option("--filter", "name_filter", default="", metavar="TEXT", help="Name contains TEXT.")
@click.option("--type", "type_", type=click.Choice([t.value for t in DomainType]))
@common_options
def list_command(name_filter: str, type_: str | None) -> None:
    """List domains, sorted by name."""
    state = app()
    domains = service.list_domains(
        state.directory(),
        Actor.local(),
        name_filter=name_filter,
        type=DomainType(type_) if type_ else None,
    )
    state.out.table([_row(d) for d in domains], COLUMNS, empty="no domains")


def _row(domain: Domain) -> dict[str, Any]:
    return to_data(domain)


@domain_group.command("add")
@click.argument("name")
@click.option(
    "--mail-dir",
    metavar="DIR",
    help="Where the domain's mailboxes go (default DATA_DIR/mail/NAME).",
)
@field_options
@common_options
def add_command(name: str, mail_dir: str | None, **options: Any) -> None:
    """Add the domain NAME and create its mail directory."""
    state = app()
    domain = service.add_domain(
        state.directory(), state.settings(), Actor.local(), name, mail_dir, **given_fields(options)
    )
    state.out.done(
        f"added domain {domain.name} (mail in {mail_path(domain.mail_dir)})", **_row(domain)
    )


@domain_group.command("show")
@click.argument("name")
@common_options
def show_command(name: str) -> None:
    """Show every setting of the domain NAME."""
    state = app()
    domain = find_domain(name)
    state.out.record({**_row(domain), "users": service.count_users(state.directory(), domain)})


@domain_group.command("edit")
@click.argument("name")
@click.option("--mail-dir", metavar="DIR", help="New mail directory (existing mail is not moved).")
@field_options
@common_options
def edit_command(name: str, mail_dir: str | None, **options: Any) -> None:
    """Change settings of the domain NAME (only the options given)."""
    state = app()
    fields = given_fields(options)
    if not fields and mail_dir is None:
        raise CLIError("nothing to change; give at least one option (see `mailmax domain edit -h`)")
    domain = service.edit_domain(
        state.directory(), state.settings(), Actor.local(), name, mail_dir, **fields
    )
    if mail_dir is not None:
        fields["mail_dir"] = domain.mail_dir
    state.out.done(f"changed domain {domain.name}: {', '.join(sorted(fields))}", **_row(domain))


@domain_group.command("delete")
@click.argument("name")
@mode_option
@yes_option
@common_options
def delete_command(name: str, mode: str, yes: bool) -> None:
    """Delete the domain NAME with its users and aliases."""
    state = app()
    domain = find_domain(name)
    users = service.count_users(state.directory(), domain)
    delete_flow(
        f"domain {domain.name} and its {users} user(s)",
        mail_path(domain.mail_dir),
        mode,
        yes,
        lambda chosen: service.delete_domain(state.directory(), Actor.local(), domain.name, chosen),
    )


@domain_group.group("alias")
def alias_group() -> None:
    """Other names of a domain: mail to user@ALIAS goes to user@DOMAIN."""


@alias_group.command("list")
@common_options
def alias_list_command() -> None:
    """List domain aliases."""
    state = app()
    rows = service.list_domain_aliases(state.directory(), Actor.local())
    columns = [Column("alias", "ALIAS"), Column("domain", "DOMAIN")]
    state.out.table(rows, columns, empty="no domain aliases")


@alias_group.command("add")
@click.argument("alias")
@click.argument("domain")
@common_options
def alias_add_command(alias: str, domain: str) -> None:
    """Make ALIAS another name of DOMAIN."""
    state = app()
    service.add_domain_alias(state.directory(), Actor.local(), alias, domain)
    state.out.done(f"added domain alias {alias} -> {domain}", alias=alias, domain=domain)


@alias_group.command("delete")
@click.argument("alias")
@common_options
def alias_delete_command(alias: str) -> None:
    """Remove the domain alias ALIAS (the domain and its mail are untouched)."""
    state = app()
    service.remove_domain_alias(state.directory(), Actor.local(), alias)
    state.out.done(f"deleted domain alias {alias}", alias=alias)
