"""``mailmax alias ...``: user aliases, addresses delivering to one or more targets."""

from __future__ import annotations

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column
from mailmax.core.directory.errors import NotFound
from mailmax.core.services import aliases as service
from mailmax.core.services.actor import Actor

COLUMNS = [Column("address", "ALIAS"), Column("targets", "TARGETS")]


def find_alias(address: str) -> list[str]:
    """The targets of the alias ``address``; a CLIError saying where to look when it is missing."""
    try:
        return service.get_alias(app().directory(), Actor.local(), address)
    except NotFound as exc:
        domain = address.rpartition("@")[2] or "DOMAIN"
        raise CLIError(
            f"{exc}; see the aliases with `mailmax alias list --domain {domain}`"
        ) from None


@click.group("alias")
def alias_group() -> None:
    """Manage user aliases: mail to the alias goes to its targets."""


@alias_group.command("list")
@click.option("--domain", metavar="DOMAIN", help="Only aliases in DOMAIN.")
@common_options
def list_command(domain: str | None) -> None:
    """List aliases and their targets, sorted by address."""
    state = app()
    rows = [
        {"address": address, "targets": targets}
        for address, targets in service.list_aliases(state.directory(), Actor.local(), domain)
    ]
    state.out.table(rows, COLUMNS, empty="no aliases")


@alias_group.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@common_options
def add_command(address: str, targets: tuple[str, ...]) -> None:
    """Add the alias ADDRESS delivering to TARGETS.

    Each target is an existing user or alias here (a bare name is in the alias's domain) or a
    full remote address. Targets that lead back to ADDRESS are refused (a loop).
    """
    state = app()
    service.add_alias(state.directory(), Actor.local(), address, list(targets))
    _done(f"added alias {address}", address)


@alias_group.command("show")
@click.argument("address")
@common_options
def show_command(address: str) -> None:
    """Show the targets of the alias ADDRESS."""
    app().out.record({"address": address, "targets": find_alias(address)})


@alias_group.command("edit")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@common_options
def edit_command(address: str, targets: tuple[str, ...]) -> None:
    """Replace the targets of the alias ADDRESS with TARGETS (checked as for `alias add`)."""
    state = app()
    service.edit_alias(state.directory(), Actor.local(), address, list(targets))
    _done(f"changed alias {address}", address)


@alias_group.command("delete")
@click.argument("address")
@common_options
def delete_command(address: str) -> None:
    """Delete the alias ADDRESS (its targets are untouched)."""
    state = app()
    find_alias(address)
    service.delete_alias(state.directory(), Actor.local(), address)
    state.out.done(f"deleted alias {address}", address=address)


def _done(message: str, address: str) -> None:
    targets = find_alias(address)
    app().out.done(f"{message} -> {', '.join(targets)}", address=address, targets=targets)
