"""The ``mailmax`` command group: global options, command registration, error reporting.

Exit status: 0 success, 1 a user error (printed as ``error: <message>`` on stderr), 2 a usage
error reported by click (unknown option, missing argument, bad choice).
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from mailmax.core.cli import (
    access,
    admincmd,
    aliases,
    antivirus,
    auth,
    autoreply,
    bans,
    configcmd,
    domains,
    housekeeping,
    init,
    ldap,
    metrics,
    observe,
    plugins,
    queue,
    reload,
    rules,
    unlock,
    usermove,
    users,
)
from mailmax.core.cli.context import App, CLIError, config_option, json_option
from mailmax.core.config import ConfigError

_LIST_HINTS = {
    "domain": "see the domains with `mailmax domain list`",
    "user": "see the users with `mailmax user list`",
    "alias": "see the aliases with `mailmax alias list`",
}


#: Domain and user fields whose option is not ``--`` plus the field name with dashes.
_OPTIONS = {
    "account_type": "--type",
    "smtp_auth_disabled": "--smtp-auth/--no-smtp-auth",
    "daily_send_messages": "--daily-messages",
    "daily_send_mb": "--daily-mb",
    "daily_limits_enabled": "--daily-limits",
}


def option_name(field: str) -> str:
    """The command-line option that sets the domain or user field ``field``."""
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def with_list_hint(message: str) -> str:
    """``message`` plus the list command showing what exists, unless it already names one."""
    kind = message.split(" ", 1)[0].lower()
    if kind in _LIST_HINTS and f"mailmax {kind} list" not in message:
        return f"{message}; {_LIST_HINTS[kind]}"
    return message


def _explain(exc: Exception) -> str | None:
    """The message of an error the user can fix, or None for an unexpected one."""
    from mailmax.core.tls import TLSConfigError

    if isinstance(exc, ConfigError | TLSConfigError):
        return str(exc)
    from sqlalchemy.exc import SQLAlchemyError

    from mailmax.core.directory.errors import (
        DirectoryError,
        DirectoryUnavailable,
        FieldError,
        NotFound,
    )

    if isinstance(exc, FieldError):
        return exc.named(option_name(exc.field))
    if isinstance(exc, NotFound):
        return with_list_hint(str(exc))
    if isinstance(exc, DirectoryError):
        return str(exc)
    if isinstance(exc, DirectoryUnavailable):
        return f"{exc} (a temporary failure; try again)"
    if isinstance(exc, SQLAlchemyError):
        reason = getattr(exc, "orig", None) or exc
        return f"database error: {reason} (check [server] database_url and the database server)"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return None


class MailmaxGroup(click.Group):
    """The root group: turns known errors into ``error: <message>`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report failures without a traceback (unless --debug)."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            state = ctx.find_object(App)
            if state is not None and state.debug:
                traceback.print_exc()
            message = _explain(exc)
            if message is None:
                message = (
                    f"unexpected {type(exc).__name__}: {exc} "
                    "(rerun with --debug for the traceback and report it)"
                )
            raise CLIError(message) from None
        finally:
            state = ctx.find_object(App)
            if state is not None:
                state.close()


@click.group(cls=MailmaxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@json_option
@click.option(
    "--debug",
    is_flag=True,
    envvar="MAILMAX_DEBUG",
    help="Show the traceback of unexpected errors.",
)
@click.version_option(package_name="mailmax", prog_name="mailmax")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Administer a MailMax mail server: set it up, check its configuration, and manage
    domains, users and aliases.

    Start with `mailmax init --data-dir DIR`. Every command accepts --json for scripts.
    """
    ctx.ensure_object(App).debug = debug


cli.add_command(init.init_command)
cli.add_command(configcmd.config_group)
cli.add_command(domains.domain_group)
users.user_group.add_command(unlock.unlock_command)
users.user_group.add_command(usermove.move_command)
users.user_group.add_command(observe.logins_command)
cli.add_command(users.user_group)
cli.add_command(aliases.alias_group)
cli.add_command(plugins.plugin_group)
cli.add_command(reload.reload_command)
cli.add_command(metrics.metrics_command)
cli.add_command(observe.trace_command)
cli.add_command(observe.stats_command)
cli.add_command(antivirus.antivirus_group)
cli.add_command(auth.auth_group)
cli.add_command(queue.queue_group)
cli.add_command(bans.ban_group)
cli.add_command(access.access_group)
cli.add_command(autoreply.autoreply_group)
cli.add_command(housekeeping.housekeeping_group)
cli.add_command(ldap.ldap_group)
cli.add_command(rules.rule_group)
cli.add_command(admincmd.admin_group)


def main() -> None:
    """Console-script entry point of ``mailmax``."""
    cli(prog_name="mailmax")


if __name__ == "__main__":  # pragma: no cover
    main()
