"""The one renderer every command prints through: readable tables by default, JSON with --json.

Commands hand over plain data (mappings, dataclasses, lists of them); this module decides how it
looks. In JSON mode each command prints exactly one JSON document on stdout; errors always go to
stderr as ``error: <message>``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: the row key it shows and its header."""

    key: str
    header: str


def to_data(value: Any) -> Any:
    """Turn dataclasses, enums, paths and tuples into JSON-ready values (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_data(v) for v in value]
    return value


def text(value: Any) -> str:
    """How one value reads in a table or record listing."""
    value = to_data(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    return str(value)


class Output:
    """Prints command results as text or, with ``as_json``, as one JSON document."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def json(self, data: Any) -> None:
        """Print ``data`` as indented JSON."""
        click.echo(json.dumps(to_data(data), indent=2, ensure_ascii=False))

    def table(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, empty: str
    ) -> None:
        """A list: aligned columns, or (JSON) an array of the full rows."""
        if self.as_json:
            self.json(list(rows))
            return
        if not rows:
            click.echo(empty)
            return
        cells = [[text(row.get(c.key)) for c in columns] for row in rows]
        widths = [
            max(len(c.header), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)
        ]
        for line in [[c.header for c in columns], *cells]:
            click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())

    def record(self, data: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> None:
        """One object: ``label: value`` lines, or (JSON) the object."""
        if self.as_json:
            self.json(data)
            return
        labels = labels or {}
        names = {key: labels.get(key, key.replace("_", " ")) for key in data}
        width = max((len(n) for n in names.values()), default=0)
        for key, value in data.items():
            click.echo(f"{names[key] + ':':<{width + 1}} {text(value)}".rstrip())

    def done(self, message: str, *, changed: bool = True, **data: Any) -> None:
        """A finished change: the sentence, or (JSON) the one shape of every changing command,
        ``{"ok": true, "changed": ..., "message": ..., "object": {...}}``.

        ``changed`` is false when there was nothing to do; ``object`` is what the command made,
        changed or removed (for ``add`` and ``edit``: the record as ``show --json`` prints it).
        """
        if self.as_json:
            self.json({"ok": True, "changed": changed, "message": message, "object": data})
        else:
            click.echo(message)

    def lines(self, lines: Sequence[str]) -> None:
        """Extra human-readable lines (skipped in JSON mode, where the data says it all)."""
        if not self.as_json:
            for line in lines:
                click.echo(line)


def warn(message: str) -> None:
    """A warning on stderr (also in JSON mode, so stdout stays parseable)."""
    click.echo(f"warning: {message}", err=True)
