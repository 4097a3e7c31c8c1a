"""Careful edits of the ``[plugins]`` part of the config file (system scope of the CLI).

Two things are edited, with tomlkit, leaving every other line (comments included) as it is:

- the ``enabled`` array in ``[plugins]`` (the table is added if missing);
- keys of the ``[plugins.settings.NAME]`` table (added if missing).

The result is parsed and validated as a whole, and given to the caller's check (the CLI builds
the plugin set it would give), before it replaces the file (atomically, same mode); a file that
is not valid TOML, or a name that is not a table there, is refused with a message saying what
to change by hand.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Array, InlineTable, Table

from mailmax.core import config as config_mod

#: Called with the settings an edit would give, before the file is replaced; raises to refuse.
Check = Callable[[config_mod.Settings], None]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


class EditError(Exception):
    """The file cannot be edited safely; the message says what to change by hand."""


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings, numbers, booleans, lists and tables of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise EditError(f"cannot write {value!r} in a config file")


def toml_key(key: str) -> str:
    """A bare key when possible, else a quoted one."""
    return key if _BARE.match(key) else json.dumps(key)


def _document(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text())
    except TOMLKitError as exc:
        raise EditError(f"{path}: not valid TOML ({exc}); fix it by hand") from None


def _table(document: tomlkit.TOMLDocument, names: tuple[str, ...]) -> Any:
    """The table ``names`` of ``document``, made (as ``[a.b.c]``) where it is missing."""
    node: Any = document
    for depth, name in enumerate(names):
        if name not in node:
            node[name] = tomlkit.table(is_super_table=depth < len(names) - 1)
        node = node[name]
        if not isinstance(node, Table | InlineTable):
            where = ".".join(names[: depth + 1])
            raise EditError(f"{where} is not a table in the config file; edit it by hand")
    return node


def _write(
    path: Path, document: tomlkit.TOMLDocument, check: Check | None = None
) -> config_mod.Settings:
    text = tomlkit.dumps(document)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EditError(f"{path}: the edit would not be valid TOML ({exc}); edit by hand") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        settings = config_mod.load(tmp)
        if check is not None:
            check(settings)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return settings


def set_enabled(path: Path, names: list[str], check: Check | None = None) -> config_mod.Settings:
    """Make ``[plugins] enabled`` the list ``names``; returns the new settings.

    A list written over several lines stays so. ``check`` sees the new settings before the file
    is replaced; what it raises leaves the file as it was."""
    document = _document(path)
    plugins = _table(document, ("plugins",))
    old = plugins.get("enabled")
    array = tomlkit.array()
    array.extend(names)
    if isinstance(old, Array) and "\n" in old.as_string():
        array.multiline(True)
    plugins["enabled"] = array
    return _write(path, document, check)


def set_settings(
    path: Path, plugin: str, values: dict[str, Any], check: Check | None = None
) -> config_mod.Settings:
    """Set keys of ``[plugins.settings.PLUGIN]`` (a value of None removes the key); ``check``
    as for :func:`set_enabled`."""
    document = _document(path)
    table = _table(document, ("plugins", "settings", plugin))
    for key, value in values.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return _write(path, document, check)
