"""The ``[ldap.NAME]`` tables of the configuration file: one LDAP server (or several, for
failover) that a domain can take its users from (``mailmax domain edit D --user-source
ldap:NAME``).

Kept apart from :mod:`mailmax.core.config`, which holds it as ``Settings.ldap``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The name of an LDAP source, as written after ``ldap:`` in a domain's user source.
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LDAPAttributes(BaseModel):
    """Which LDAP attribute holds each user field; an empty name means LDAP does not hold it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(
        "mail",
        description="Mail addresses; the first one in the domain is the mailbox, the others"
        " are its aliases.",
    )
    aliases: str = Field("", description="More addresses delivered to the same mailbox.")
    login: str = Field("uid", description="The login name (found by login_filter).")
    first_name: str = Field("givenName", description="First name.")
    last_name: str = Field("sn", description="Last name.")
    quota_mb: str = Field("", description="Mailbox size limit in MB (0 = the domain default).")
    enabled: str = Field(
        "",
        description="Account switch: TRUE/FALSE, yes/no, 1/0, enabled/disabled; missing = enabled.",
    )
    home_node: str = Field("", description="The cluster node that keeps the user's mail.")
    forward_to: str = Field(
        "",
        description="Addresses the user's mail is forwarded to (the forwarding plugin's"
        " targets); when set, LDAP holds the targets of every user of the source and they"
        " cannot be set in MailMax.",
    )


class LDAPSourceSettings(BaseModel):
    """One LDAP user source, ``[ldap.NAME]``; domains use it with ``--user-source ldap:NAME``.
    Applied when the server restarts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(
        min_length=1,
        description="Server URLs (``ldap://host:389``, ``ldaps://host:636``), tried in order:"
        " the next one takes over when one does not answer.",
    )
    start_tls: bool = Field(False, description="Upgrade ``ldap://`` connections with StartTLS.")
    ca_file: str = Field(
        "",
        description="CA certificates (PEM) that verify the server's certificate for LDAPS and"
        " StartTLS; empty = the system's.",
    )
    bind_dn: str = Field(
        "", description="Service account that searches for users; empty = anonymous."
    )
    bind_password: str = Field("", description="Its password.")
    base_dn: str = Field(min_length=1, description="Where users are searched (subtree).")
    address_filter: str = Field(
        "(&(objectClass=inetOrgPerson)(mail={address}))",
        description="Filter finding a mailbox by address; ``{address}``, ``{local}`` and"
        " ``{domain}`` are replaced, escaped.",
    )
    login_filter: str = Field(
        "(&(objectClass=inetOrgPerson)(uid={login}))",
        description="Filter finding a user by a login name that is not an address;"
        " ``{login}`` and ``{domain}`` are replaced, escaped.",
    )
    auth: Literal["bind", "compare"] = Field(
        "bind",
        description="Password check: ``bind`` as the user, or ``compare`` the password with"
        " password_attribute through the service account (the server checks the hash).",
    )
    password_attribute: str = Field(
        "userPassword", description="The attribute ``compare`` checks the password against."
    )
    attributes: LDAPAttributes = Field(
        default_factory=LDAPAttributes, description="``[ldap.NAME.attributes]``: attribute names."
    )
    timeout: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Seconds to connect and to wait for each answer; when no server"
        " answered, none is asked again for this long (calls fail at once meanwhile).",
    )
    pool_size: int = Field(
        4, ge=1, le=64, description="Service connections kept open (and parallel look-ups)."
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^ldaps?://[^/\s]+/?$", value):
                raise ValueError(
                    f"{value!r} is not an LDAP server URL; write ldap://host[:port] or"
                    " ldaps://host[:port]"
                )
        return values

    @field_validator("address_filter", "login_filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        if not (value.startswith("(") and value.endswith(")")):
            raise ValueError(f"{value!r} is not an LDAP filter (it must be in parentheses)")
        return value

    @model_validator(mode="after")
    def _tls(self) -> LDAPSourceSettings:
        if self.start_tls and any(url.startswith("ldaps:") for url in self.urls):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        if self.bind_password and not self.bind_dn:
            raise ValueError("bind_password is set but bind_dn is empty")
        if self.auth == "compare" and not self.bind_dn:
            raise ValueError("auth = 'compare' needs a service account (bind_dn)")
        return self


def check_source_names(sources: dict[str, LDAPSourceSettings]) -> dict[str, LDAPSourceSettings]:
    """``sources`` unchanged when every name can follow ``ldap:``, else :class:`ValueError`."""
    for name in sources:
        if not SOURCE_NAME.match(name):
            raise ValueError(
                f"LDAP source name {name!r}: use lower-case letters, digits, '-' and '_'"
            )
    return sources
