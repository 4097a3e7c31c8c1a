"""``mailmax housekeeping run``: the housekeeping plugin's daily run, now (or as a dry run)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from mailmax.core.cli import plugins
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.hooks import PluginError, Scope
from mailmax.core.pluginhost.scopes import ScopeStore

PLUGIN = "housekeeping"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group("housekeeping")
def housekeeping_group() -> None:
    """Remove old messages from chosen folders; report or disable idle users."""


@housekeeping_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only say what would be done; change nothing.")
@click.option("--domain", metavar="DOMAIN", help="Only this domain.")
@common_options
def run_command(dry_run: bool, domain: str | None) -> None:
    """Run housekeeping now with each domain's settings, and print what it did."""
    from mailmax.plugins.housekeeping import job

    state = app()
    directory = state.directory()
    if domain is not None and directory.get_domain(domain) is None:
        raise CLIError(
            f"domain {domain} does not exist; see the domains with `mailmax domain list`"
        )
    admin = plugins.plugin_admin()
    plugin = admin.load(PLUGIN)
    store = ScopeStore(admin.source())

    def settings_for(scope: Scope) -> tuple[bool, Any]:
        try:
            return store.effective(plugin, scope)
        except PluginError as exc:
            raise CLIError(str(exc)) from None

    report = job.run(directory, settings_for, time.time(), dry_run=dry_run, only_domain=domain)
    if state.as_json:
        state.out.json(report.as_dict())
    else:
        _print(report)
    if report.errors:
        raise CLIError(f"{len(report.errors)} user(s) could not be housekept (see above)")


def _print(report: Any) -> None:
    if not report.domains:
        click.echo(
            f"housekeeping is off for every domain: switch it on with `mailmax plugin enable "
            f"{PLUGIN}` and set remove_after_days or inactive_days with `mailmax plugin set "
            f"{PLUGIN} ...` (add --domain DOMAIN for one domain)"
        )
        return
    verb = "would remove" if report.dry_run else "removed"
    for removal in report.removed:
        click.echo(
            f"{removal.user} {removal.folder}: {verb} {removal.messages} message(s), "
            f"{removal.bytes} bytes"
        )
    for idle in report.inactive:
        done = "disabled" if idle.action == "disable" and not report.dry_run else idle.action
        if report.dry_run and idle.action == "disable":
            done = "would disable"
        click.echo(f"{idle.user}: no login since {_when(idle.since)}: {done}")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(
        f"{len(report.domains)} domain(s): {len(report.removed)} folder(s) "
        f"{'to clean' if report.dry_run else 'cleaned'}, {len(report.inactive)} idle user(s)"
    )
