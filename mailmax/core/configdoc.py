"""Render the configuration reference (every key, its default, whether a reload applies it,
what it allows) from the schema.

``python -m mailmax.core.configdoc`` prints the Markdown tables that ``docs/configuration.md``
carries between its ``<!-- reference -->`` markers; a test keeps the two in step.
"""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mailmax.core import config, ldapsettings
from mailmax.core.observe.settings import ActivitySettings, LogServiceSettings, LogSettings

SECTIONS: list[tuple[str, type[BaseModel], bool]] = [
    ("server", config.ServerSettings, False),
    ("tls", config.TLSSettings, False),
    ("listeners", config.ListenerSettings, True),
    ("smtp", config.SMTPSettings, False),
    ("pop3", config.POP3Settings, False),
    ("imap", config.IMAPSettings, False),
    ("connections", config.ConnectionSettings, False),
    ("auth", config.AuthSettings, False),
    ("spool", config.SpoolSettings, False),
    ("queue", config.QueueSettings, False),
    ("plugins", config.PluginSettings, False),
    ("cluster", config.ClusterSettings, False),
    ("cluster.nodes.NAME", config.ClusterNodeSettings, False),
    ("ldap.NAME", ldapsettings.LDAPSourceSettings, False),
    ("ldap.NAME.attributes", ldapsettings.LDAPAttributes, False),
    ("log", LogSettings, False),
    ("log.services.NAME", LogServiceSettings, False),
    ("activity", ActivitySettings, False),
    ("admin", config.AdminSettings, False),
]

#: Sections applied only when the server restarts, whatever their keys say.
RESTART_SECTIONS = frozenset({"ldap.NAME", "ldap.NAME.attributes"})


def _type_name(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: typing.Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "(required)"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(table below)"
    return f"`{json.dumps(value)}`"


def render() -> str:
    """The reference tables as Markdown."""
    out: list[str] = []
    for name, model, is_array in SECTIONS:
        out.append(f"### `[[{name}]]`" if is_array else f"### `[{name}]`")
        out.append("")
        out.append((model.__doc__ or "").strip())
        out.append("")
        out.append("| key | type | default | on reload | meaning |")
        out.append("|---|---|---|---|---|")
        for key, field in model.model_fields.items():
            limits = []
            for meta in field.metadata:
                for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                    if getattr(meta, attr, None) is not None:
                        limits.append(f"{sign} {getattr(meta, attr)}")
            meaning = (field.description or "").replace("|", "\\|")
            if limits:
                meaning += f" Allowed: {', '.join(limits)}."
            restart = name in RESTART_SECTIONS or config.needs_restart(model, key)
            reload = "restart" if restart else "live"
            out.append(
                f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {reload} "
                f"| {meaning} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
