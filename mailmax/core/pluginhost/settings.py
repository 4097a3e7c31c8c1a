"""Declared plugin settings: a pydantic schema per plugin, validation and clear error messages.

A plugin declares its settings as a :class:`PluginSettings` subclass named ``Settings`` in its
module. Every field has a type and a default; a field's ``description`` is shown by the CLI. A
plugin without a ``Settings`` class takes any settings as a plain dict.

A hook's ``config`` argument is the validated settings object for the scope the hook runs in;
it also reads like a read-only mapping (``config["key"]``, ``config.get("key")``), so plugins
written against plain dicts keep working.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

#: Keys inside a plugin's settings table that are not settings but scope information.
RESERVED_KEYS = frozenset({"enabled", "listeners"})
#: ``json_schema_extra`` of a setting that only the system administrator sets, in the config
#: file (a program to run, a socket of the server): refused per listening address, domain or
#: user. ``Field("", description=..., json_schema_extra=SYSTEM_ONLY)``.
SYSTEM_ONLY = {"mailmax_system_only": True}


class SettingsError(ValueError):
    """A plugin setting has a value the plugin does not allow; the message says what is allowed."""


class PluginSettings(BaseModel):
    """Base class of a plugin's declared settings (frozen; unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the plugin has no such setting."""
        return getattr(self, key) if key in type(self).model_fields else default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(type(self).model_fields)

    def keys(self) -> list[str]:
        """The setting names."""
        return list(type(self).model_fields)

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` pairs."""
        return [(key, getattr(self, key)) for key in type(self).model_fields]


Schema = type[PluginSettings]


def schema_of(module: Any) -> Schema | None:
    """The module's declared ``Settings`` class, or None when it declares none."""
    schema = getattr(module, "Settings", None)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema  # type: ignore[return-value]
    return None


def split_reserved(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, reserved)``: a settings table without, and with only, the reserved keys."""
    values = {k: v for k, v in raw.items() if k not in RESERVED_KEYS}
    reserved = {k: v for k, v in raw.items() if k in RESERVED_KEYS}
    return values, reserved


def type_name(annotation: Any) -> str:
    """A short human name of a field type: ``integer``, ``list of text``, ``one of 'a', 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = type_name(args[0]) if args else "values"
        return f"list of {inner} (comma-separated)"
    if origin is dict:
        return "table (JSON object)"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    names = {str: "text", int: "integer", float: "number", bool: "true or false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def describe_field(schema: Schema, key: str) -> str:
    """What a setting allows: type, description and default."""
    field = schema.model_fields[key]
    parts = [type_name(field.annotation)]
    words = {
        "ge": ">=",
        "gt": ">",
        "le": "<=",
        "lt": "<",
        "min_length": "at least",
        "max_length": "at most",
    }
    for meta in field.metadata:  # annotated-types constraints (ge, le, min_length, ...)
        for attr, word in words.items():
            if getattr(meta, attr, None) is not None:
                parts.append(f"{word} {getattr(meta, attr)}")
    text = f"{key}: {', '.join(parts)}"
    if field.description:
        text += f" - {field.description}"
    default = field.get_default(call_default_factory=True)
    return f"{text} (default {json.dumps(default, default=str)})"


def allowed_keys(schema: Schema) -> str:
    """Every setting of ``schema`` with what it allows, one per line."""
    return "\n".join(f"  {describe_field(schema, key)}" for key in schema.model_fields)


def _error_text(plugin: str, schema: Schema, exc: ValidationError, where: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(settings)"
        top = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            known = ", ".join(schema.model_fields) or "none"
            lines.append(f"unknown setting {key!r} (settings of {plugin}: {known})")
            continue
        message = error["msg"].removeprefix("Value error, ")
        allowed = describe_field(schema, top) if top in schema.model_fields else ""
        line = f"{key}={error.get('input')!r} is not allowed: {message}"
        lines.append(f"{line}; allowed: {allowed}" if allowed else line)
    return f"plugin {plugin} ({where}): " + "; ".join(lines)


def system_only_keys(schema: Schema | None) -> list[str]:
    """The settings of ``schema`` marked :data:`SYSTEM_ONLY`."""
    if schema is None:
        return []
    return [
        key
        for key, field in schema.model_fields.items()
        if isinstance(field.json_schema_extra, dict)
        and field.json_schema_extra.get("mailmax_system_only")
    ]


def check_scope_keys(plugin: str, schema: Schema | None, keys: Any, where: str) -> None:
    """Refuse (:class:`SettingsError`) system-only settings among ``keys`` set at ``where``
    (a listening address, a domain or a user)."""
    bad = [key for key in keys if key in system_only_keys(schema)]
    if bad:
        raise SettingsError(
            f"plugin {plugin} ({where}): {', '.join(bad)} can only be set system-wide, by the "
            f"system administrator in [plugins.settings.{plugin}] of the config file"
        )


def validate(
    plugin: str, schema: Schema | None, values: Mapping[str, Any], where: str = "system"
) -> Any:
    """``values`` as the plugin's settings object (a dict when it declares no schema).

    Raises :class:`SettingsError` naming the plugin, the scope (``where``), the key and what the
    key allows.
    """
    if schema is None:
        return types.MappingProxyType(dict(values))
    try:
        return schema.model_validate(dict(values))
    except ValidationError as exc:
        raise SettingsError(_error_text(plugin, schema, exc, where)) from None


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin in (list, tuple, set, frozenset)


def parse_value(schema: Schema | None, key: str, text: str) -> Any:
    """A ``key=value`` from the command line as the value to store.

    JSON is taken as JSON (``5``, ``true``, ``["a", "b"]``); a list setting also takes
    comma-separated text; anything else stays text and the schema converts or refuses it.
    """
    field = schema.model_fields.get(key) if schema is not None else None
    stripped = text.strip()
    if field is not None and _is_list(field.annotation) and not stripped.startswith("["):
        return [part.strip() for part in stripped.split(",") if part.strip()]
    if field is not None and field.annotation is str:
        return text
    try:
        return json.loads(stripped)
    except ValueError:
        return text


def jsonable(settings: Any) -> dict[str, Any]:
    """A settings object (or mapping) as plain JSON-compatible data."""
    if isinstance(settings, BaseModel):
        return settings.model_dump(mode="json")
    return json.loads(json.dumps(dict(settings), default=str))
