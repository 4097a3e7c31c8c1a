"""The configuration file checked, and the configuration in force (the CLI and the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailmax.core.config import ConfigError, Settings, load
from mailmax.core.directory.engine import safe_url


def check(path: Path) -> dict[str, Any]:
    """The config file at ``path`` checked with its TLS files and database: ``ok``, every
    problem found, and warnings about settings that work but are less safe than they could be."""
    try:
        settings = load(path)
    except ConfigError as exc:
        return {"ok": False, "config": str(path.resolve()), "problems": [str(exc)], "warnings": []}
    return check_settings(settings, path)


def check_settings(settings: Settings, path: Path) -> dict[str, Any]:
    """``settings`` (loaded from ``path``) checked with their TLS files and database (see
    :func:`check`)."""
    warnings: list[str] = []
    problems = tls_problems(settings) + cluster_problems(settings)
    problems += database_problems(settings, warnings)
    return {
        "ok": not problems,
        "config": str(path.resolve()),
        "problems": problems,
        "warnings": warnings + config_warnings(settings),
    }


def effective(settings: Settings) -> dict[str, Any]:
    """The configuration in force, every default filled in; a database password as ***."""
    data = settings.model_dump(mode="json")
    data["server"]["database_url"] = safe_url(data["server"]["database_url"])
    return data


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


def database_problems(settings: Settings, warnings: list[str] | None = None) -> list[str]:
    """What keeps the directory database from opening (nothing when it opens); a schema
    that opening it would upgrade is added to ``warnings``."""
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
        problems = _schema_problems(directory.schema_version(), shown, warnings)
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


def _schema_problems(version: str, shown: str, warnings: list[str] | None) -> list[str]:
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
    if version != migrations.head() and warnings is not None:
        warnings.append(
            f"{shown} has the older schema version {version}; the server and mailmax "
            f"commands upgrade it to {migrations.head()} when they open it"
        )
    return []
