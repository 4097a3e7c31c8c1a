"""``mailmax user ...``: list, add, show, edit, delete users and set passwords.

Passwords are never echoed nor printed, and hashes never leave the directory: ``show`` says
only whether a password is set and whether its clear copy is kept.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from mailmax.core.cli.context import (
    CLIError,
    app,
    ask_new_password,
    common_options,
    interactive,
)
from mailmax.core.cli.deleting import delete_flow, mode_option, yes_option
from mailmax.core.cli.output import Column, to_data
from mailmax.core.cli.sendinglimits import warn_if_not_enforced
from mailmax.core.directory.api import AccountType, User
from mailmax.core.directory.errors import NotFound
from mailmax.core.services import users as service
from mailmax.core.services.actor import Actor

_COUNT = click.IntRange(min=0)

#: option name -> (User field, click option, convert); shared by ``add`` and ``edit``.
_FIELDS: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "first_name": ("first_name", click.option("--first-name", metavar="TEXT"), str),
    "last_name": ("last_name", click.option("--last-name", metavar="TEXT"), str),
    "type_": ("account_type", click.option(
        "--type", "type_", type=click.Choice([t.value for t in AccountType]),
        help="normal, disabled (no login, mail refused) or spamtrap."), AccountType),
    "disk_limit_mb": ("disk_limit_mb", click.option(
        "--disk-limit-mb", type=_COUNT, metavar="N",
        help="Mailbox size limit in MB; mail over it bounces (0: the domain default)."), int),
    "max_message_size": ("max_message_size", click.option(
        "--max-message-size", type=_COUNT, metavar="BYTES",
        help="Largest message in bytes (0: the domain or system limit)."), int),
    "smtp_auth": ("smtp_auth_disabled", click.option(
        "--smtp-auth/--no-smtp-auth", default=None,
        help="Allow or refuse SMTP AUTH for this user."), lambda on: not on),
    "daily_messages": ("daily_send_messages", click.option(
        "--daily-messages", type=_COUNT, metavar="N",
        help="Messages the user may send per UTC day (0: no limit; a number turns the daily"
        " limits on)."), int),
    "daily_mb": ("daily_send_mb", click.option(
        "--daily-mb", type=_COUNT, metavar="N",
        help="MB the user may send per UTC day (0: no limit; a number turns the daily limits"
        " on)."), int),
    "daily_limits": ("daily_limits_enabled", click.option(
        "--daily-limits/--no-daily-limits", default=None,
        help="Switch the daily sending limits on or off (the numbers are kept)."), bool),
    "virus_check": ("virus_check", click.option(
        "--virus-check/--no-virus-check", default=None,
        help="Switch the antivirus plugin on or off for this user."), bool),
}  # fmt: skip

COLUMNS = [
    Column("address", "ADDRESS"),
    Column("full_name", "NAME"),
    Column("account_type", "TYPE"),
    Column("password", "PASSWORD"),
    Column("disk_limit_mb", "DISK MB"),
]


def field_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add every user field option to a command."""
    for _name, option, _convert in reversed(_FIELDS.values()):
        func = option(func)
    return func


def given_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The User fields named by the options given; a non-zero daily limit turns limits on."""
    fields = {}
    for param, value in options.items():
        if value is not None and param in _FIELDS:
            name, _option, convert = _FIELDS[param]
            fields[name] = convert(value)
    daily = (fields.get("daily_send_messages"), fields.get("daily_send_mb"))
    if any(daily) and "daily_limits_enabled" not in fields:
        fields["daily_limits_enabled"] = True
    warn_if_not_enforced(fields, ("daily_send_messages", "daily_send_mb", "daily_limits_enabled"))
    return fields


def describe(user: User, maildir: Any = None) -> dict[str, Any]:
    """A user as shown by the CLI: its fields, address and password state (never a hash)."""
    data = {"address": user.address, **to_data(user)}
    data["full_name"] = f"{user.first_name} {user.last_name}".strip()
    data["password"] = "set" if user.has_password else "blank"
    if maildir is not None:
        data["maildir"] = str(maildir)
    return data


def find_user(address: str) -> User:
    """The user at ``address``; a CLIError saying where to look when there is none."""
    try:
        return service.get_user(app().directory(), Actor.local(), address)
    except NotFound as exc:
        domain = address.rpartition("@")[2] or "DOMAIN"
        raise CLIError(f"{exc}; see the users with `mailmax user list --domain {domain}`") from None


def read_password(password: str | None, from_stdin: bool, *, what: str) -> str:
    """The new password from --password, --password-stdin or two prompts on a terminal."""
    if password is not None and from_stdin:
        raise CLIError("give either --password or --password-stdin, not both")
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    elif password is None:
        if not interactive():
            raise CLIError(
                f"no password given for {what}; use --password-stdin (or --password PW, "
                "visible to other local users in the process list)"
            )
        password = ask_new_password(what)
    if not password:
        raise CLIError(f"the password for {what} is empty; to leave it blank use --no-password")
    return password


@click.group("user")
def user_group() -> None:
    """Manage users."""


@user_group.command("list")
@click.option("--domain", metavar="DOMAIN", help="Only users of DOMAIN.")
@click.option("--filter", "name_filter", default="", metavar="TEXT", help="Name contains TEXT.")
@click.option("--type", "type_", type=click.Choice([t.value for t in AccountType]))
@common_options
def list_command(domain: str | None, name_filter: str, type_: str | None) -> None:
    """List users, sorted by domain, then name."""
    state = app()
    users = service.list_users(
        state.directory(),
        Actor.local(),
        domain=domain,
        name_filter=name_filter,
        account_type=AccountType(type_) if type_ else None,
    )
    state.out.table([describe(u) for u in users], COLUMNS, empty="no users")


@user_group.command("add")
@click.argument("address")
@click.option("--password", metavar="PW", help="The password (visible in the process list).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
@click.option(
    "--no-password", is_flag=True, help="No password: the domain's blank-password policy applies."
)
@click.option("--keep-clear-password", is_flag=True, help="Also keep the clear text (APOP, CRAM).")
@field_options
@common_options
def add_command(
    address: str,
    password: str | None,
    password_stdin: bool,
    no_password: bool,
    keep_clear_password: bool,
    **options: Any,
) -> None:
    """Add the user ADDRESS (name@domain). Without a password option, asks for one on a TTY."""
    state = app()
    if no_password and (password is not None or password_stdin):
        raise CLIError("--no-password cannot be combined with --password or --password-stdin")
    secret = None if no_password else read_password(password, password_stdin, what=address)
    user = service.add_user(
        state.directory(),
        Actor.local(),
        address,
        secret,
        keep_clear=keep_clear_password,
        **given_fields(options),
    )
    data = describe(user, state.directory().user_maildir(user))
    state.out.done(f"added user {user.address} (password {data['password']})", **data)


@user_group.command("show")
@click.argument("address")
@common_options
def show_command(address: str) -> None:
    """Show every setting of the user ADDRESS (never the password)."""
    state = app()
    user = find_user(address)
    data = describe(user, state.directory().user_maildir(user))
    for hidden in ("name", "domain", "full_name", "has_password"):
        data.pop(hidden)
    state.out.record(data)


@user_group.command("edit")
@click.argument("address")
@field_options
@common_options
def edit_command(address: str, **options: Any) -> None:
    """Change settings of the user ADDRESS (only the options given)."""
    state = app()
    fields = given_fields(options)
    if not fields:
        raise CLIError("nothing to change; give at least one option (see `mailmax user edit -h`)")
    user = service.edit_user(state.directory(), Actor.local(), address, **fields)
    state.out.done(
        f"changed user {user.address}: {', '.join(sorted(fields))}",
        **describe(user, state.directory().user_maildir(user)),
    )


@user_group.command("passwd")
@click.argument("address")
@click.option("--password", metavar="PW", help="The password (visible in the process list).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
@click.option("--no-password", is_flag=True, help="Blank the password (blank policy applies).")
@click.option(
    "--keep-clear-password/--no-keep-clear-password",
    default=None,
    help="Keep (or drop) the clear text; default: as before.",
)
@common_options
def passwd_command(
    address: str,
    password: str | None,
    password_stdin: bool,
    no_password: bool,
    keep_clear_password: bool | None,
) -> None:
    """Set the password of the user ADDRESS. Without an option, asks twice on a TTY."""
    state = app()
    user = find_user(address)
    if no_password and (password is not None or password_stdin):
        raise CLIError("--no-password cannot be combined with --password or --password-stdin")
    secret = None if no_password else read_password(password, password_stdin, what=user.address)
    service.set_password(
        state.directory(), Actor.local(), user.address, secret, keep_clear=keep_clear_password
    )
    state.out.done(
        f"{'blanked' if secret is None else 'changed'} the password of {user.address}",
        address=user.address,
        password="blank" if secret is None else "set",
    )


@user_group.command("delete")
@click.argument("address")
@mode_option
@yes_option
@common_options
def delete_command(address: str, mode: str, yes: bool) -> None:
    """Delete the user ADDRESS."""
    state = app()
    user = find_user(address)
    delete_flow(
        f"user {user.address}",
        state.directory().user_maildir(user),
        mode,
        yes,
        lambda chosen: service.delete_user(state.directory(), Actor.local(), user.address, chosen),
    )
