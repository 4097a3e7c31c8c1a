"""``mailmax auth ...``: see and lift the running server's failed-login blocks and delays."""

from __future__ import annotations

import json

import click

from mailmax.core.admin import AdminError, request
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column

COLUMNS = [
    Column("kind", "KIND"),
    Column("ip", "IP"),
    Column("account", "ACCOUNT"),
    Column("failures", "FAILURES"),
    Column("blocked_seconds", "BLOCKED (S)"),
    Column("delay_seconds", "DELAY (S)"),
]


def _ask(command: str) -> str:
    try:
        return request(app().settings().data_dir, command, timeout=30.0)
    except AdminError as exc:
        raise CLIError(str(exc)) from None


@click.group("auth")
def auth_group() -> None:
    """Failed-login blocks and delays of the running server."""


@auth_group.command("blocked")
@common_options
def blocked_command() -> None:
    """List the blocks and delays in force.

    KIND ``pair``: that IP may not try that account; ``ip``: that IP may not try any account
    it has not logged in to before; ``account``: logins to that account from addresses it has
    not logged in from wait DELAY seconds (an account is never blocked).
    """
    rows = json.loads(_ask("auth-blocked"))
    app().out.table(rows, COLUMNS, empty="no failed-login blocks or delays")


@auth_group.command("unblock")
@click.argument("target")
@common_options
def unblock_command(target: str) -> None:
    """Forget the failed logins of TARGET, an IP address (every block of that IP) or an
    account (its delay and its blocks from every IP)."""
    answer = json.loads(_ask(f"auth-unblock {target}"))
    app().out.done(
        f"forgot the failed logins of {target} ({answer['records']} record(s))",
        target=target,
        records=answer["records"],
    )
