"""What every command shares: the chosen config file, the output mode, the open directory.

The config file is found lazily, so commands that do not need one (``init``, ``--help``) work
on a machine without a system.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from mailmax.core.cli.output import Output
from mailmax.core.config import DEFAULT_CONFIG_NAME, Settings, load
from mailmax.core.directory.engine import safe_url as safe_url

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory

#: The last place looked at when neither --config nor $MAILMAX_CONFIG is given.
SYSTEM_CONFIG = Path("/etc/mailmax") / DEFAULT_CONFIG_NAME
ENV_CONFIG = "MAILMAX_CONFIG"

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(click.ClickException):
    """A user error: printed as ``error: <message>`` on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the message the way every MailMax error is printed."""
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def resolve_config(explicit: str | None, environ: Any = None) -> Path:
    """The config file to use: ``--config``, else $MAILMAX_CONFIG, else the first that exists
    of ./mailmax.toml and /etc/mailmax/mailmax.toml. Raises :class:`CLIError` naming what
    was tried when none exists."""
    environ = os.environ if environ is None else environ
    if explicit:
        path, origin = Path(explicit), "--config"
    elif environ.get(ENV_CONFIG):
        path, origin = Path(environ[ENV_CONFIG]), f"${ENV_CONFIG}"
    else:
        tried = [Path.cwd() / DEFAULT_CONFIG_NAME, SYSTEM_CONFIG]
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise CLIError(
            f"no configuration file found: ${ENV_CONFIG} is not set, and neither "
            f"{tried[0]} nor {tried[1]} exists; pass --config PATH, set ${ENV_CONFIG}, "
            "or create a system with `mailmax init --data-dir DIR`"
        )
    if not path.is_file():
        raise CLIError(
            f"{path} (from {origin}): no such config file; check the path, "
            "or create a system with `mailmax init --data-dir DIR`"
        )
    return path


@dataclass
class App:
    """Per-invocation state, stored as the click context object."""

    config: str | None = None
    as_json: bool = False
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    _directory: SQLDirectory | None = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        """The renderer for this invocation's output mode."""
        return Output(self.as_json)

    def config_path(self) -> Path:
        """The config file this invocation uses (see :func:`resolve_config`)."""
        return resolve_config(self.config)

    def settings(self) -> Settings:
        """The loaded, validated configuration (ConfigError says what is wrong)."""
        if self._settings is None:
            self._settings = load(self.config_path())
        return self._settings

    def directory(self) -> SQLDirectory:
        """The directory database named by the configuration, opened (and migrated) once."""
        if self._directory is None:
            self._directory = open_directory(self.settings())
        return self._directory

    def close(self) -> None:
        """Release the database connection, if one was opened."""
        if self._directory is not None:
            closer = getattr(self._directory, "close", None)
            if closer is not None:
                closer()
            self._directory = None


def open_directory(settings: Settings) -> SQLDirectory:
    """Open the directory of ``settings``; a database that cannot be opened is a CLIError."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailmax.core.directory.api import BlankPasswordPolicy
    from mailmax.core.directory.errors import DirectoryError, DirectoryUnavailable
    from mailmax.core.directory.mixed import Directory, build_ldap_sources

    try:
        directory = Directory.open(
            settings.database_url,
            base_dir=settings.data_dir,
            blank_password_default=BlankPasswordPolicy(settings.server.blank_password),
        )
        directory.ldap_sources = build_ldap_sources(settings.ldap)
        return directory
    except (DirectoryUnavailable, DirectoryError) as exc:
        raise CLIError(
            f"cannot open the database {safe_url(settings.database_url)}: {exc}; "
            f"check [server] database_url in {settings.source}"
        ) from None
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise CLIError(
            f"cannot open the database {safe_url(settings.database_url)}: {reason}; "
            f"check [server] database_url in {settings.source}"
        ) from None


def app() -> App:
    """The current invocation's :class:`App`."""
    return click.get_current_context().ensure_object(App)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(App).as_json = True


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(App).config = value


json_option = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print the result as JSON (for scripts).",
)
config_option = click.option(
    "--config",
    metavar="PATH",
    expose_value=False,
    callback=_set_config,
    help=f"Config file (default: ${ENV_CONFIG}, else ./{DEFAULT_CONFIG_NAME}, "
    f"else {SYSTEM_CONFIG}).",
)


def common_options(func: F) -> F:
    """Accept ``--config`` and ``--json`` after the command name too."""
    return config_option(json_option(func))


def interactive() -> bool:
    """True when a person can answer prompts (stdin is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm_or_refuse(action: str, yes: bool) -> None:
    """Go on when ``--yes`` was given or the person at the terminal agrees to ``action``."""
    if yes:
        return
    if not interactive():
        raise CLIError(f"refusing to {action} without confirmation; add --yes")
    if not click.confirm(f"{action[0].upper()}{action[1:]}?", default=False, err=True):
        raise CLIError("cancelled; nothing was changed")


def ask_new_password(what: str, *, allow_empty: bool = False) -> str:
    """Ask for a new password twice without echo; with ``allow_empty`` an empty answer is "".

    Prompts go to stderr (like every prompt here), so stdout holds only the result.
    """
    hint = " (empty: generate one)" if allow_empty else ""
    while True:
        first = click.prompt(
            f"Password for {what}{hint}", hide_input=True, default="", show_default=False, err=True
        )
        if not first:
            if allow_empty:
                return ""
            click.echo("error: the password is empty; type one", err=True)
            continue
        again = click.prompt("Repeat it", hide_input=True, default="", show_default=False, err=True)
        if first == again:
            return first
        click.echo("error: the two passwords differ; try again", err=True)
