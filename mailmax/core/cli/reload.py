"""``mailmax reload``: make the running server re-read its config and reload its plugins."""

from __future__ import annotations

import json

import click

from mailmax.core.admin import AdminError, request
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.configdiff import ReloadReport


@click.command("reload")
@click.option(
    "--timeout", default=60.0, show_default=True, metavar="SECONDS", help="How long to wait."
)
@common_options
def reload_command(timeout: float) -> None:
    """Re-read the config file and apply it to the running server, without dropping a
    connection.

    The server re-reads the config file, re-imports every plugin's code, validates every
    setting of every plugin switched on anywhere (system, listener, domain or user), applies
    every setting that can change live (limits, networks, timeouts, TLS certificates, the log
    file, queue timers) and swaps the plugin set in one step; sessions and deliveries in flight
    keep what they started with. The log file is reopened (for log rotation). Changed settings
    that need a restart (listeners, data paths) are listed and keep their running values.

    A refused reload changes nothing: the reason is printed (and logged) and the exit status
    is 1. (SIGHUP does the same, with the answer in the log only.)
    """
    state = app()
    try:
        answer = request(state.settings().data_dir, "reload", timeout=timeout)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    report = json.loads(answer)
    state.out.done("\n".join(ReloadReport(**report).lines()), **report)
