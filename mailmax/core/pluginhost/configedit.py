"""Small, careful edits of the ``[plugins]`` part of the config file (system scope of the CLI).

Only two shapes are edited, leaving every other line (comments included) as it is:

- the one-line ``enabled = [...]`` array in ``[plugins]`` (the table is added if missing);
- ``key = value`` lines in a ``[plugins.settings.NAME]`` table (added at the end if missing).

The result is parsed and validated as a whole, and given to the caller's check (the CLI builds
the plugin set it would give), before it replaces the file (atomically, same mode); anything
else (a multi-line array, the key in an inline table) is refused with a message saying what to
change by hand.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailmax.core import config as config_mod

#: Called with the settings an edit would give, before the file is replaced; raises to refuse.
Check = Callable[[config_mod.Settings], None]

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
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


def _table_name(header: str) -> tuple[str, ...]:
    parts = []
    for part in re.findall(r'"(?:[^"\\]|\\.)*"|[^.\s]+', header):
        parts.append(json.loads(part) if part.startswith('"') else part)
    return tuple(parts)


def _tables(lines: list[str]) -> list[tuple[tuple[str, ...], int, int]]:
    """``(name parts, header line, end line)`` of every ``[table]`` (arrays of tables skipped)."""
    found: list[tuple[tuple[str, ...], int]] = []
    for index, line in enumerate(lines):
        if line.lstrip().startswith("[["):
            found.append((("[[]]",), index))
            continue
        match = _HEADER.match(line)
        if match:
            found.append((_table_name(match.group(1)), index))
    out = []
    for position, (name, start) in enumerate(found):
        end = found[position + 1][1] if position + 1 < len(found) else len(lines)
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        out.append((name, start, end))
    return out


def _key_line(lines: list[str], start: int, end: int, key: str) -> int | None:
    pattern = re.compile(rf"^\s*({re.escape(key)}|{re.escape(json.dumps(key))})\s*=")
    for index in range(start + 1, end):
        if pattern.match(lines[index]):
            return index
    return None


def _set_key(lines: list[str], table: tuple[str, ...], key: str, value: Any) -> list[str]:
    lines = list(lines)
    tables = {name: (start, end) for name, start, end in _tables(lines)}
    new_line = f"{toml_key(key)} = {toml_value(value)}"
    if table not in tables:
        if lines and lines[-1].strip():
            lines.append("")
        header = ".".join(toml_key(part) for part in table)
        return [*lines, f"[{header}]", new_line]
    start, end = tables[table]
    index = _key_line(lines, start, end, key)
    if index is None:
        lines.insert(end, new_line)
        return lines
    if lines[index].rstrip().endswith(("[", "{")) or (
        "[" in lines[index] and "]" not in lines[index]
    ):
        raise EditError(f"[{'.'.join(table)}] {key} spans several lines; edit it by hand")
    lines[index] = new_line
    return lines


def _unset_key(lines: list[str], table: tuple[str, ...], key: str) -> list[str]:
    tables = {name: (start, end) for name, start, end in _tables(lines)}
    if table not in tables:
        return list(lines)
    start, end = tables[table]
    index = _key_line(lines, start, end, key)
    if index is None:
        return list(lines)
    return lines[:index] + lines[index + 1 :]


def _write(path: Path, lines: list[str], check: Check | None = None) -> config_mod.Settings:
    text = "\n".join(lines).rstrip("\n") + "\n"
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


def read_lines(path: Path) -> list[str]:
    """The config file's lines."""
    return path.read_text().splitlines()


def set_enabled(path: Path, names: list[str], check: Check | None = None) -> config_mod.Settings:
    """Make ``[plugins] enabled`` the list ``names``; returns the new settings.

    ``check`` sees the new settings before the file is replaced; what it raises leaves the
    file as it was."""
    return _write(path, _set_key(read_lines(path), ("plugins",), "enabled", names), check)


def set_settings(
    path: Path, plugin: str, values: dict[str, Any], check: Check | None = None
) -> config_mod.Settings:
    """Set keys of ``[plugins.settings.PLUGIN]`` (a value of None removes the key); ``check``
    as for :func:`set_enabled`."""
    lines = read_lines(path)
    table = ("plugins", "settings", plugin)
    for key, value in values.items():
        lines = (
            _unset_key(lines, table, key) if value is None else _set_key(lines, table, key, value)
        )
    return _write(path, lines, check)
