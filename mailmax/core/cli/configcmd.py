"""``mailmax config check`` and ``mailmax config show``."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import warn
from mailmax.core.config import load
from mailmax.core.pluginhost.configedit import EditError, toml_value
from mailmax.core.services import configcheck

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
    found = configcheck.check_settings(load(path), path)
    for message in found["warnings"]:
        warn(message)
    if state.as_json:
        state.out.json(found)
    if found["problems"]:
        if not state.as_json:
            for problem in found["problems"]:
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
    state = app()
    settings = state.settings()
    data = configcheck.effective(settings)
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
