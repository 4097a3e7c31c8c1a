"""``mailmax ldap test ADDRESS``: what MailMax finds in LDAP for an address, and why."""

from __future__ import annotations

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.directory.errors import DirectoryError, DirectoryUnavailable


@click.group("ldap")
def ldap_group() -> None:
    """LDAP user sources."""


@ldap_group.command("test")
@click.argument("address")
@click.option(
    "--password-prompt", is_flag=True, help="Also check a password (asked for, never echoed)."
)
@common_options
def test_command(address: str, password_prompt: bool) -> None:
    """Show what MailMax finds for ADDRESS: its domain's user source, the LDAP filter used,
    the entry found and the user it makes, and what mail to ADDRESS would do.

    Exit status 1 when the address is not a user of an LDAP domain or LDAP does not answer.
    """
    from mailmax.core.services.actor import Actor
    from mailmax.core.services.ldap import ACCEPTED, ldap_report

    state = app()
    password = click.prompt("password", hide_input=True, err=True) if password_prompt else None
    try:
        report = ldap_report(state.directory(), Actor.local(), address, password)
    except (DirectoryError, DirectoryUnavailable) as exc:
        raise CLIError(str(exc)) from None
    state.out.record(report)
    if report.get("lookup") not in ACCEPTED:
        raise click.exceptions.Exit(1)
