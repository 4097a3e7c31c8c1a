"""``mailmax init``: the basic system wizard.

Creates, in one data directory: the commented config file, the SQLite directory database
(migrated), the first domain and its mail directory, the queue directory, the users postmaster,
admin and root, and a self-signed certificate. Everything is validated before the first file is
written; a failure part-way removes the database it created, and the config file is written
last (atomically), so a half-made system never looks like a finished one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import (
    CLIError,
    ask_new_password,
    interactive,
    json_option,
    safe_url,
)
from mailmax.core.cli.initreport import FIRST_USERS, config_text, report
from mailmax.core.config import DEFAULT_CONFIG_NAME, Settings, parse

_ALPHABET = string.ascii_letters + string.digits


def check_hostname(value: str, *, what: str, need_dot: bool) -> str:
    """``value`` in canonical form if it is a valid DNS name; else a CLIError saying why."""
    from mailmax.core.directory.errors import DirectoryError
    from mailmax.core.directory.loginnames import check_domain_name, check_mail_domain

    try:
        name = check_mail_domain(value) if need_dot else check_domain_name(value)
    except DirectoryError as exc:
        raise CLIError(f"{what}: {exc}") from None
    return name.rstrip(".")


def new_password() -> str:
    """A random 20-character password (letters and digits, about 119 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


@dataclass
class Plan:
    """Everything ``init`` is about to create, worked out before touching the disk."""

    data_dir: Path
    domain: str
    hostname: str
    address: str
    ports: dict[str, int]
    database_url: str
    force: bool
    #: Port of the HTTPS admin API (on 127.0.0.1).
    admin_port: int = 8443
    passwords: dict[str, str] = field(default_factory=dict)
    generated: set[str] = field(default_factory=set)
    #: The mail directory of a domain kept from a shared database (--force).
    kept_mail_dir: Path | None = None

    @property
    def config_file(self) -> Path:
        """Where the config file goes."""
        return self.data_dir / DEFAULT_CONFIG_NAME

    @property
    def cert(self) -> Path:
        """The certificate file."""
        return self.data_dir / "tls" / "cert.pem"

    @property
    def key(self) -> Path:
        """The private key file."""
        return self.data_dir / "tls" / "key.pem"

    @property
    def mail_dir(self) -> Path:
        """The first domain's mail directory."""
        return self.kept_mail_dir or self.data_dir / "mail" / self.domain

    @property
    def queue_dir(self) -> Path:
        """The queue (spool) directory."""
        return self.data_dir / "queue"

    def settings(self) -> Settings:
        """The configuration the file will hold, validated by the real schema."""
        return parse(tomllib.loads(config_text(self)), str(self.config_file))

    def sqlite_file(self) -> Path | None:
        """The database file when the directory is SQLite, else None."""
        from sqlalchemy.engine import make_url

        url = make_url(self.settings().database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)


def _ask_passwords(plan: Plan, given: dict[str, str | None], ask: bool) -> None:
    for user in FIRST_USERS:
        password = given[user]
        if password == "":
            raise CLIError(
                f"--{user}-password is empty; give a password or omit it to generate one"
            )
        if password is None and ask:
            password = ask_new_password(f"{user}@{plan.domain}", allow_empty=True)
        if not password:
            password = new_password()
            plan.generated.add(user)
        plan.passwords[user] = password


def _existing(plan: Plan) -> list[Path]:
    """The files of an earlier system; without --force their presence stops ``init``."""
    found = [plan.config_file] if plan.config_file.exists() else []
    db = plan.sqlite_file()
    if db is not None and db.exists():
        found.append(db)
    if found and not plan.force:
        raise CLIError(
            f"{plan.data_dir} already holds a MailMax system "
            f"({' and '.join(str(p) for p in found)} exist); nothing was changed. "
            "Use --force to set it up again (the old files are kept as *.bak-TIMESTAMP)"
        )
    return found


def _sqlite_family(db: Path) -> list[Path]:
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def _move_aside(paths: list[Path], plan: Plan) -> list[Path]:
    """Rename an old system's files to ``NAME.bak-TIMESTAMP``; return the new names."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    moved = []
    db = plan.sqlite_file()
    for path in paths:
        family = _sqlite_family(path) if path == db else [path]
        for item in family:
            if item.exists():
                target = item.with_name(f"{item.name}.bak-{stamp}")
                item.rename(target)
                moved.append(target)
    return moved


def _write_atomic(path: Path, content: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _populate(plan: Plan) -> None:
    """Create (or, with --force, bring up to date) the domain and the first users."""
    from mailmax.core.cli.context import open_directory
    from mailmax.core.directory.admins import AdminStore

    directory = open_directory(plan.settings())
    where = safe_url(plan.database_url)
    try:
        domains = [d.name for d in directory.list_domains()]
        if domains and plan.domain not in domains and not plan.force:
            raise CLIError(
                f"the database {where} already holds domains ({', '.join(domains)}); "
                "nothing was added. Use --force to add this system to it anyway"
            )
        if plan.domain not in domains:
            plan.mail_dir.mkdir(parents=True, exist_ok=True)
            directory.add_domain(plan.domain, str(plan.mail_dir))
        elif not plan.force:
            raise CLIError(
                f"the database {where} already holds {plan.domain}; use --force "
                "to keep it and reset the passwords of postmaster, admin and root"
            )
        else:
            kept = directory.get_domain(plan.domain)
            assert kept is not None
            plan.kept_mail_dir = plan.settings().path(kept.mail_dir)
        for user in FIRST_USERS:
            address = f"{user}@{plan.domain}"
            if directory.get_user(address) is None:
                directory.add_user(address, plan.passwords[user])
            else:
                directory.set_password(address, plan.passwords[user])
        AdminStore(directory).grant(f"admin@{plan.domain}", system=True)
    finally:
        closer = getattr(directory, "close", None)
        if closer is not None:
            closer()


def _build(plan: Plan) -> dict[str, Any]:
    """Create the system described by ``plan``; return what was done."""
    from mailmax.core.tls import write_self_signed

    moved: list[Path] = []
    existing = _existing(plan)
    if existing:
        moved = _move_aside(existing, plan)
    for folder in (plan.data_dir, plan.queue_dir):
        folder.mkdir(parents=True, exist_ok=True)
    plan.cert.parent.mkdir(mode=0o700, exist_ok=True)
    new_cert = not (plan.cert.exists() and plan.key.exists())
    if new_cert:
        write_self_signed(plan.cert, plan.key, [plan.hostname, "localhost"])
    db = plan.sqlite_file()
    try:
        _populate(plan)
        _write_atomic(plan.config_file, config_text(plan), 0o600)
    except BaseException:
        if db is not None:
            for item in _sqlite_family(db):
                item.unlink(missing_ok=True)
        for backup in moved:  # put the old system back as it was
            backup.rename(backup.with_name(backup.name.rsplit(".bak-", 1)[0]))
        raise
    return {"moved_aside": moved, "new_certificate": new_cert}


def _ask_name(question: str, default: str, *, need_dot: bool) -> str:
    """Prompt until the answer is a valid name."""

    def convert(value: str) -> str:
        try:
            return check_hostname(value, what=question.lower(), need_dot=need_dot)
        except CLIError as exc:
            raise click.UsageError(exc.format_message()) from None

    return click.prompt(question, default=default, value_proc=convert, err=True)


def _check_address(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an IP address (e.g. 127.0.0.1 or ::1)"
        ) from None


_PORT = click.IntRange(1, 65535)


@click.command("init")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the config, database, mail, queue and certificate (created if missing).",
)
@click.option("--domain", help="First domain (asked for; default example.com).")
@click.option("--hostname", help="Server host name (default mail.DOMAIN).")
@click.option("--postmaster-password", metavar="PW", help="postmaster's password (else generated).")
@click.option("--admin-password", metavar="PW", help="admin's password (else generated).")
@click.option("--root-password", metavar="PW", help="root's password (else generated).")
@click.option("--smtp-port", type=_PORT, default=2525, show_default=True, help="Inbound SMTP port.")
@click.option(
    "--submission-port", type=_PORT, default=5587, show_default=True, help="Submission port."
)
@click.option("--smtps-port", type=_PORT, default=4465, show_default=True, help="SMTPS port.")
@click.option("--pop3-port", type=_PORT, default=1110, show_default=True, help="POP3 (STLS) port.")
@click.option("--pop3s-port", type=_PORT, default=1995, show_default=True, help="POP3S port.")
@click.option(
    "--imap-port", type=_PORT, default=1143, show_default=True, help="IMAP (STARTTLS) port."
)
@click.option("--imaps-port", type=_PORT, default=1993, show_default=True, help="IMAPS port.")
@click.option(
    "--admin-port",
    type=_PORT,
    default=8443,
    show_default=True,
    help="HTTPS admin API port (on 127.0.0.1).",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    callback=_check_address,
    help="IP address the listeners use (0.0.0.0 for all IPv4 addresses).",
)
@click.option(
    "--database-url",
    metavar="URL",
    help="SQLAlchemy URL of the directory (default: SQLite file DATA_DIR/mailmax.db).",
)
@click.option("--force", is_flag=True, help="Set up again over an existing system.")
@click.option("--non-interactive", is_flag=True, help="Never prompt (also when stdin is no TTY).")
@json_option
def init_command(
    data_dir: Path,
    domain: str | None,
    hostname: str | None,
    postmaster_password: str | None,
    admin_password: str | None,
    root_password: str | None,
    smtp_port: int,
    submission_port: int,
    smtps_port: int,
    pop3_port: int,
    pop3s_port: int,
    imap_port: int,
    imaps_port: int,
    admin_port: int,
    address: str,
    database_url: str | None,
    force: bool,
    non_interactive: bool,
) -> None:
    """Set up a new MailMax system in DATA_DIR (the basic system wizard).

    Creates DATA_DIR/mailmax.toml, the database, the first domain with its mail directory,
    the queue directory, the users postmaster, admin and root (admin is the first system
    administrator of the HTTPS admin API), and a self-signed certificate. Passwords that
    are not given are generated and printed once.
    """
    ask = interactive() and not non_interactive
    if ask and domain is None:
        domain = _ask_name("Domain", "example.com", need_dot=True)
    domain = check_hostname(domain or "example.com", what="--domain", need_dot=True)
    if ask and hostname is None:
        hostname = _ask_name("Host name of this server", f"mail.{domain}", need_dot=False)
    hostname = check_hostname(hostname or f"mail.{domain}", what="--hostname", need_dot=False)
    ports = {
        "smtp": smtp_port,
        "submission": submission_port,
        "smtps": smtps_port,
        "pop3": pop3_port,
        "pop3s": pop3s_port,
        "imap": imap_port,
        "imaps": imaps_port,
    }
    if len({*ports.values(), admin_port}) < len(ports) + 1:
        named = {**ports, "admin": admin_port}
        given = ", ".join(f"--{name}-port {port}" for name, port in named.items())
        raise CLIError(f"every listener needs its own port (got {given})")
    data_dir = data_dir.expanduser().absolute()
    plan = Plan(
        data_dir=data_dir,
        domain=domain,
        hostname=hostname,
        address=address,
        ports=ports,
        database_url=database_url or f"sqlite:///{data_dir / 'mailmax.db'}",
        force=force,
        admin_port=admin_port,
    )
    plan.settings()  # the file about to be written must load
    _existing(plan)  # refuse before asking for passwords
    given = {"postmaster": postmaster_password, "admin": admin_password, "root": root_password}
    _ask_passwords(plan, given, ask)
    report(plan, _build(plan))
