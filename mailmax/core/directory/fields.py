"""Checking and converting the editable fields of domains and users.

Values may come typed (from code) or as text (from the CLI or a form): ``"relay"``, ``"25"``,
``"yes"``. Each bad value gets a message naming the field and what it accepts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import fields as dataclass_fields
from typing import Any

from mailmax.core.directory.api import (
    AccountType,
    BlankPasswordPolicy,
    Domain,
    DomainType,
    User,
)
from mailmax.core.directory.errors import DirectoryError, FieldError
from mailmax.core.directory.loginnames import check_user_name
from mailmax.core.ldapsettings import SOURCE_NAME

OVER_LIMIT_NOTICES = ("none", "percent", "mb", "system")
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def _int(limit: int = 2**31 - 1) -> Callable[[str, object], int]:
    def convert(field: str, value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise FieldError(
                field, f"{{field}} must be a whole number from 0 to {limit}, not {value!r}"
            )
        return value

    return convert


def _bool(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise FieldError(field, f"{{field}} must be yes or no (true/false), not {value!r}")


def _text(limit: int, *, spaces: bool = True) -> Callable[[str, object], str]:
    def convert(field: str, value: object) -> str:
        if not isinstance(value, str):
            raise FieldError(field, f"{{field}} must be text, not {value!r}")
        if len(value) > limit:
            raise FieldError(field, f"{{field}} is longer than {limit} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise FieldError(field, "{field} contains control characters (such as a line break)")
        if not spaces and any(c.isspace() for c in value):
            raise FieldError(field, f"{{field}} may not contain spaces: {value!r}")
        return value

    return convert


def _choice(
    kind: type[enum.StrEnum], allowed: tuple[str, ...] = ()
) -> Callable[[str, object], str]:
    names = allowed or tuple(member.value for member in kind)

    def convert(field: str, value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in names:
            raise FieldError(field, f"{{field}} must be one of {', '.join(names)}, not {value!r}")
        return str(text)

    return convert


def _mail_dir(field: str, value: object) -> str:
    text = _text(4096)(field, value)
    if not text.strip():
        raise FieldError(field, "{field} is empty; give the folder where the domain's mail is kept")
    return text


def _local_part(field: str, value: object) -> str:
    text = _text(64, spaces=False)(field, value)
    try:
        return check_user_name(text) if text else ""
    except DirectoryError as exc:
        raise FieldError(field, f"{{field}}: {exc}") from None


def _over_limit(field: str, value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in OVER_LIMIT_NOTICES:
        raise FieldError(
            field, f"{{field}} must be one of {', '.join(OVER_LIMIT_NOTICES)}, not {value!r}"
        )
    return str(text)


def _user_source(field: str, value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text == "sql":
        return ""
    if not isinstance(text, str) or not (
        text == "" or (text.startswith("ldap:") and SOURCE_NAME.match(text[5:]))
    ):
        raise FieldError(field, f"{{field}} must be sql or ldap:NAME, not {value!r}")
    return text


DOMAIN_FIELDS: dict[str, Callable[[str, object], Any]] = {
    "mail_dir": _mail_dir,
    "type": _choice(DomainType),
    "delivery_host": _text(255, spaces=False),
    "backup_priority": _int(65535),
    "home_node": _text(255, spaces=False),
    "default_box_mb": _int(),
    "max_users": _int(),
    "session_send_mb": _int(),
    "session_send_messages": _int(),
    "max_message_size": _int(2**62),
    "catch_all": _local_part,
    "monitor": _local_part,
    "blank_password": _choice(BlankPasswordPolicy),
    "over_limit_notice": _over_limit,
    "over_limit_threshold": _int(),
    "user_source": _user_source,
}

USER_FIELDS: dict[str, Callable[[str, object], Any]] = {
    "first_name": _text(255),
    "last_name": _text(255),
    "account_type": _choice(AccountType),
    "smtp_auth_disabled": _bool,
    "disk_limit_mb": _int(),
    "daily_send_messages": _int(),
    "daily_send_mb": _int(),
    "daily_limits_enabled": _bool,
    "max_message_size": _int(2**62),
    "virus_check": _bool,
    "home_node": _text(255, spaces=False),
    "moving": _bool,
}

_USER_NOT_EDITABLE = {
    "name": "a user cannot be renamed; add a new user and delete the old one",
    "domain": "a user cannot move to another domain; add a new user and delete the old one",
    "has_password": "use set_password (or `mailmax user passwd`) to set or blank a password",
    "clear_password_kept": "use set_password with keep_clear to keep or drop the clear copy",
}


def domain_values(values: Mapping[str, object]) -> dict[str, Any]:
    """Check domain fields (not ``name`` and ``aliases``) and return column values."""
    return _convert("domain", values, DOMAIN_FIELDS, {"name": "a domain cannot be renamed"})


def user_values(values: Mapping[str, object]) -> dict[str, Any]:
    """Check user fields and return column values."""
    return _convert("user", values, USER_FIELDS, _USER_NOT_EDITABLE)


def _convert(
    kind: str,
    values: Mapping[str, object],
    known: Mapping[str, Callable[[str, object], Any]],
    refused: Mapping[str, str],
) -> dict[str, Any]:
    result = {}
    for name, value in values.items():
        if name in refused:
            raise DirectoryError(f"{kind} field {name!r} cannot be changed here: {refused[name]}")
        if name not in known:
            raise DirectoryError(
                f"{kind} has no field {name!r}; the fields are: {', '.join(sorted(known))}"
            )
        result[name] = known[name](name, value)
    return result


def check_domain(values: Mapping[str, Any]) -> None:
    """Check the rules that tie a domain's fields together (the whole record, after a change)."""
    if values["type"] == DomainType.RELAY and not values["delivery_host"]:
        raise FieldError(
            "delivery_host",
            "a relay domain needs a delivery host: give {field} (e.g. mail.example.net)",
        )
    if values["type"] == DomainType.BACKUP and not values["backup_priority"]:
        raise FieldError(
            "backup_priority",
            "a backup domain needs a non-zero backup priority, the MX preference of this "
            "server: give {field} (e.g. 20)",
        )
    if values["type"] == DomainType.CLUSTERED and not values["home_node"]:
        raise FieldError(
            "home_node",
            "a clustered domain needs a home node for users without their own: give {field}",
        )
    if values["over_limit_notice"] == "percent" and values["over_limit_threshold"] > 100:
        raise FieldError(
            "over_limit_threshold", "an over-limit threshold in percent ({field}) must be 0 to 100"
        )


def domain_defaults() -> dict[str, Any]:
    """Column values of a new domain before its given fields are applied."""
    return {
        field.name: field.default
        for field in dataclass_fields(Domain)
        if field.name not in ("name", "mail_dir", "aliases")
    }


#: User fields an LDAP source fills and SQL never stores.
DIRECTORY_ONLY = ("forward_to", "forward_to_source")


def user_defaults() -> dict[str, Any]:
    """Column values of a new user before its given fields are applied."""
    skip = ("name", "domain", "has_password", "clear_password_kept", *DIRECTORY_ONLY)
    return {field.name: field.default for field in dataclass_fields(User) if field.name not in skip}


def domain_from_row(row: Mapping[str, Any], aliases: tuple[str, ...]) -> Domain:
    """A Domain from a ``domains`` row."""
    values = {name: row[name] for name in DOMAIN_FIELDS}
    values["type"] = DomainType(values["type"])
    values["blank_password"] = BlankPasswordPolicy(values["blank_password"])
    return Domain(name=row["name"], aliases=aliases, **values)


def user_from_row(row: Mapping[str, Any], domain: str) -> User:
    """A User from a ``users`` row."""
    values = {name: row[name] for name in USER_FIELDS}
    values["account_type"] = AccountType(values["account_type"])
    for name in ("smtp_auth_disabled", "daily_limits_enabled", "virus_check", "moving"):
        values[name] = bool(values[name])
    return User(
        name=row["name"],
        domain=domain,
        has_password=row["password_hash"] is not None,
        clear_password_kept=bool(row["keep_clear"]),
        **values,
    )
