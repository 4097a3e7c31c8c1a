"""``mailmax autoreply ...``: a user's auto-responder (the ``autoreply`` plugin's user settings).

The settings are the plugin's overrides for the user in the directory; a running server sees a
change within ``[server] directory_cache_seconds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mailmax.core.cli import plugins
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.services import autoreply

PLUGIN = "autoreply"
#: Largest text file ``--text-file`` reads, in bytes.
MAX_TEXT_FILE = 10_000


def _admin_call(function: Any, *args: Any) -> Any:
    try:
        return function(plugins.plugin_admin(), *args)
    except DirectoryError as exc:
        raise CLIError(str(exc)) from None


def _read_text_file(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TEXT_FILE:
        raise CLIError(f"{path} is over {MAX_TEXT_FILE} bytes; nothing was changed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not UTF-8 text; nothing was changed") from None


@click.group("autoreply")
def autoreply_group() -> None:
    """A user's auto-responder: set it, show it, switch it off."""


@autoreply_group.command("set")
@click.argument("user")
@click.option("--subject", help='Subject of the replies (empty: "Auto: " and theirs).')
@click.option("--text", help="Text of the replies.")
@click.option("--text-file", metavar="FILE", help="Read the text of the replies from FILE.")
@click.option("--from", "from_address", metavar="ADDRESS", help="Address replies come from.")
@click.option("--name", "real_name", help="Real name shown with the from address.")
@click.option("--start", "start_date", metavar="YYYY-MM-DD", help="First day to answer.")
@click.option("--end", "end_date", metavar="YYYY-MM-DD", help="Last day to answer.")
@click.option("--days", type=int, help="Days before the same sender is answered again.")
@common_options
def set_command(user: str, text_file: str | None, **options: Any) -> None:
    """Switch USER's auto-responder on, with the settings given (others stay as they are).

    A line break in the subject, name or address, a date not written YYYY-MM-DD or an end
    before the start is refused, and nothing is written (exit status 1).
    """
    if text_file is not None:
        if options["text"] is not None:
            raise CLIError("give --text or --text-file, not both")
        options["text"] = _read_text_file(text_file)
    message, data = _admin_call(autoreply.switch_on, user, options)
    app().out.done(message, **data)


@autoreply_group.command("off")
@click.argument("user")
@common_options
def off_command(user: str) -> None:
    """Switch USER's auto-responder off (its text and settings are kept)."""
    message, data = _admin_call(autoreply.switch_off, user)
    app().out.done(message, **data)


@autoreply_group.command("show")
@click.argument("user")
@common_options
def show_command(user: str) -> None:
    """USER's auto-responder: on or off, and each setting with the scope it comes from."""
    state = app()
    shown = _admin_call(autoreply.show, user)
    if state.as_json:
        state.out.json(shown)
        return
    canonical, values = shown["user"], shown["settings"]
    if not shown["plugin_enabled"]:
        click.echo(f"{canonical}: off (the {PLUGIN} plugin is switched off for this user)")
    else:
        click.echo(f"{canonical}: {'on' if shown['answering'] else 'off'}")
    for key, value in values.items():
        if key != "active":
            click.echo(f"  {key}: {value if value not in ('', None) else '-'}")
