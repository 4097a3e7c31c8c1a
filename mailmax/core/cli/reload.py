"""``mailmax reload``: make the running server re-read its config and reload its plugins."""

from __future__ import annotations

import click

from mailmax.core.admin import AdminError, request
from mailmax.core.cli.context import CLIError, app, common_options


@click.command("reload")
@click.option(
    "--timeout", default=60.0, show_default=True, metavar="SECONDS", help="How long to wait."
)
@common_options
def reload_command(timeout: float) -> None:
    """Reload the running server's plugins and their settings, without dropping a connection.

    The server re-reads the config file, re-imports every plugin's code, validates every
    setting and swaps the plugin set in one step; sessions and deliveries in flight keep the
    set they started with. A refused reload changes nothing: the reason is printed (and
    logged) and the exit status is 1. (SIGHUP does the same, with the reason in the log only.)
    """
    state = app()
    try:
        answer = request(state.settings().data_dir, "reload", timeout=timeout)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    state.out.done(answer)
