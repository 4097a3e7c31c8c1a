"""``mailmax antivirus``: the running server's scanner status, definition updates, and the
antivirus switch for all users of a domain."""

from __future__ import annotations

import json

import click

from mailmax.core.admin import AdminError, request
from mailmax.core.cli.context import CLIError, app, common_options

PLUGIN = "antivirus"


def _ask(action: str, timeout: float) -> dict:
    state = app()
    try:
        answer = request(state.settings().data_dir, f"plugin-command {PLUGIN} {action}", timeout)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    return json.loads(answer)


@click.group("antivirus")
def antivirus_group() -> None:
    """Virus scanning: scanner status, definition updates, per-user switches."""


@antivirus_group.command("status")
@click.option("--timeout", default=30.0, show_default=True, metavar="SECONDS")
@common_options
def status_command(timeout: float) -> None:
    """Show whether the scanner answers, its signature version and the last update."""
    status = _ask("status", timeout)
    out = app().out
    if not out.as_json:
        status.pop("last_update", None)
    out.record(status)


@antivirus_group.command("update")
@click.option("--timeout", default=900.0, show_default=True, metavar="SECONDS")
@common_options
def update_command(timeout: float) -> None:
    """Run the definition update command now, then have clamd reload its signatures."""
    result = _ask("update", timeout)
    version = f"; clamd: {result['version']}" if result.get("version") else ""
    app().out.done(f"definitions updated{version}", **result)


@antivirus_group.command("users")
@click.argument("domain")
@click.option("--on/--off", "on", required=True, help="Scan the mail of every user, or none.")
@common_options
def users_command(domain: str, on: bool) -> None:
    """Switch scanning on or off for every user of DOMAIN (each user's own switch)."""
    from mailmax.core.services.actor import Actor
    from mailmax.core.services.antivirus import switch_users

    state = app()
    directory = state.directory()
    if directory.get_domain(domain) is None:
        raise CLIError(f"no domain {domain!r} here; see `mailmax domain list`")
    done = switch_users(directory, Actor.local(), domain, on)
    state.out.done(done.pop("message"), **done)
