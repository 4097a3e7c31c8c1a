"""``mailmax config check`` and ``mailmax config show``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options, safe_url
from mailmax.core.cli.output import warn
from mailmax.core.config import Settings, load
from mailmax.core.pluginhost.configedit import EditError, toml_value

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def tls_problems(settings: Settings) -> list[str]:
    """What is wrong with the certificates the listeners use (nothing when there are none)."""
    from mailmax.core.tls import TLSConfigError, server_options

    if not settings.listeners:
        return []
    pairs = {(settings.tls.cert, settings.tls.key): "[tls]"}
    for item in settings.listeners:
        if item.tls_cert or item.tls_key:
            pair = (item.tls_cert or settings.tls.cert, item.tls_key or settings.tls.key)
            pairs.setdefault(pair, f"listener {item.service} {item.address}:{item.port}")
    problems = []
    for (cert, key), where in pairs.items():
        files = {"cert": settings.path(cert), "key": settings.path(key)}
        missing = [f"{name} {path}" for name, path in files.items() if not path.is_file()]
        if missing:
            problems.append(
                f"{where}: {' and '.join(missing)} not found; fix the path in "
                f"{settings.source} or create a certificate (`mailmax init` makes a "
                "self-signed one)"
            )
            continue
        try:
            server_options(files["cert"], files["key"], settings.tls.min_version)
        except TLSConfigError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def cluster_problems(settings: Settings) -> list[str]:
    """A ``[cluster] tls_ca_file`` that cannot verify the nodes (nothing when it can)."""
    ca_file = settings.cluster.tls_ca_file
    if not settings.cluster.node or not ca_file:
        return []
    path = settings.path(ca_file)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return [f"[cluster] tls_ca_file: cannot read {path}: {exc.strerror}"]
    if "-----BEGIN CERTIFICATE-----" not in text:
        return [f"[cluster] tls_ca_file: {path} holds no PEM certificate"]
    return []


def config_warnings(settings: Settings) -> list[str]:
    """What works but leaves the system less safe than it could be."""
    found = []
    if settings.cluster.node and not settings.cluster.tls_ca_file:
        found.append(
            "[cluster] tls_ca_file is empty: connections between the nodes are encrypted, but"
            " no node checks the certificate of the node it connects to, so a machine on the"
            " network between them could pose as a node and learn the shared secret; set"
            " tls_ca_file to the CA certificates that sign the nodes' certificates"
        )
    return found


def database_problems(settings: Settings) -> list[str]:
    """What keeps the directory database from opening (nothing when it opens)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from mailmax.core.directory.sql import SQLDirectory

    url = settings.database_url
    shown = safe_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        return [f"[server] database_url {shown!r} is not a database URL ({exc})"]
    is_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    )
    if is_file and not Path(str(parsed.database)).is_file():
        return [
            f"[server] database_url: the database file {parsed.database} does not exist; "
            "fix the path, or create a system with `mailmax init --data-dir DIR`"
        ]
    try:
        directory = SQLDirectory.open(url, migrate=False, base_dir=settings.data_dir)
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc
        return [f"[server] database_url: cannot open {shown}: {reason}"]
    try:
        problems = _schema_problems(directory.schema_version(), shown)
        if not problems:
            problems = plugin_problems(settings, directory)
            problems += user_source_problems(settings, directory)
        return problems
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc
        return [f"[server] database_url: cannot read {shown}: {reason}"]
    finally:
        directory.close()


def plugin_problems(settings: Settings, directory: object) -> list[str]:
    """Every plugin that cannot load or whose system, domain or user settings are refused."""
    from mailmax.core.pluginhost.reload import check

    return check(settings, directory)


def user_source_problems(settings: Settings, directory: Any) -> list[str]:
    """Every domain whose users come from an LDAP source the config file does not have."""
    from mailmax.core.directory import migrations

    if directory.schema_version() != migrations.head():
        return []  # an older schema has no user sources yet
    return [
        f"domain {domain.name}: its users come from {domain.user_source}, but there is no"
        f" [ldap.{domain.user_source.removeprefix('ldap:')}] table; add it, or move the"
        f" domain's users with `mailmax domain edit {domain.name} --user-source ...`"
        for domain in directory.list_domains()
        if domain.user_source and domain.user_source.removeprefix("ldap:") not in settings.ldap
    ]


def _schema_problems(version: str, shown: str) -> list[str]:
    from mailmax.core.directory import migrations

    if not version:
        return [
            f"[server] database_url: {shown} holds no MailMax tables; "
            "is it the right database? (`mailmax init` creates one)"
        ]
    if version not in migrations.versions():
        return [
            f"[server] database_url: {shown} has schema version {version}, which this MailMax "
            f"does not know (newest known: {migrations.head()}); upgrade MailMax"
        ]
    if version != migrations.head():
        warn(
            f"{shown} has the older schema version {version}; the server and mailmax "
            f"commands upgrade it to {migrations.head()} when they open it"
        )
    return []


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    return toml_value(_without_none(value))


def _without_none(value: Any) -> Any:
    """``value`` with the unset (None) entries of its tables left out, at every depth."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """``data`` as TOML text: plain keys first, then tables and arrays of tables."""
    lines = [
        f"{_key(k)} = {_value(v)}"
        for k, v in data.items()
        if v is not None and not _is_table(v) and not _is_table_array(v)
    ]
    for name, value in data.items():
        full = f"{prefix}.{_key(name)}" if prefix else _key(name)
        if _is_table(value):
            body = to_toml(value, full)
            lines += ["", f"[{full}]", body] if body else []
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{full}]]", to_toml(item, full)]
    return "\n".join(line for line in lines if line is not None).strip("\n")


@click.group("config")
def config_group() -> None:
    """Check or show the configuration file."""


@config_group.command("check")
@common_options
def check_command() -> None:
    """Validate the configuration, its TLS files and its database.

    Prints "OK: PATH", or every problem found (exit status 1); warnings (on standard error)
    name settings that work but are less safe than they could be.
    """
    state = app()
    path = state.config_path()
    settings = load(path)
    problems = tls_problems(settings) + cluster_problems(settings) + database_problems(settings)
    warnings = config_warnings(settings)
    for message in warnings:
        warn(message)
    if state.as_json:
        state.out.json(
            {
                "ok": not problems,
                "config": str(path.resolve()),
                "problems": problems,
                "warnings": warnings,
            }
        )
    if problems:
        if not state.as_json:
            for problem in problems:
                click.echo(f"error: {problem}", err=True)
        raise click.exceptions.Exit(1)
    if not state.as_json:
        click.echo(f"OK: {path.resolve()}")


@config_group.command("show")
@common_options
def show_command() -> None:
    """Print the effective configuration, every default filled in (TOML, or JSON with --json).

    A password in the database URL is shown as ***.
    """
    from mailmax.core.services.configcheck import effective

    state = app()
    settings = state.settings()
    data = effective(settings)
    if state.as_json:
        state.out.json(data)
        return
    try:
        body = to_toml(data)
    except EditError as exc:  # pragma: no cover - the schema only holds TOML types
        raise CLIError(f"cannot show the configuration as TOML ({exc}); use --json") from None
    click.echo(f"# Effective configuration of {settings.source} (defaults filled in)")
    click.echo(f"# Data directory: {settings.data_dir}")
    click.echo(body)
