"""``mailmax housekeeping run``: the housekeeping plugin's daily run, now (or as a dry run)."""

from __future__ import annotations

import time

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.services import housekeeping
from mailmax.core.services.actor import Actor


@click.group("housekeeping")
def housekeeping_group() -> None:
    """Remove old messages from chosen folders; report or disable idle users."""


@housekeeping_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only say what would be done; change nothing.")
@click.option("--domain", metavar="DOMAIN", help="Only this domain.")
@common_options
def run_command(dry_run: bool, domain: str | None) -> None:
    """Run housekeeping now with each domain's settings, and print what it did."""
    state = app()
    directory = state.directory()
    if domain is not None and directory.get_domain(domain) is None:
        raise CLIError(
            f"domain {domain} does not exist; see the domains with `mailmax domain list`"
        )
    try:
        report = housekeeping.run(
            state.settings(), directory, Actor.local(), time.time(),
            dry_run=dry_run, domain=domain,
        )  # fmt: skip
    except DirectoryError as exc:
        raise CLIError(str(exc)) from None
    if state.as_json:
        state.out.json(report.as_dict())
    else:
        for line in housekeeping.report_lines(report):
            click.echo(line)
        for line in housekeeping.error_lines(report):
            click.echo(line, err=True)
    problem = housekeeping.failure(report)
    if problem:
        raise CLIError(problem)
