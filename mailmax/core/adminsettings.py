"""``[admin]``: the HTTPS admin API's listener, sessions and who may read metrics."""

from __future__ import annotations

from pydantic import Field, field_validator

from mailmax.core.configbase import RESTART, Section, check_ip, check_networks


class AdminSettings(Section):
    """The HTTPS admin API (its listener, sessions and who may read metrics)."""

    enabled: bool = Field(
        False,
        description="Serve the admin API (HTTPS with the [tls] certificate).",
        json_schema_extra=RESTART,
    )
    address: str = Field(
        "127.0.0.1", description="IP address the admin API listens on.", json_schema_extra=RESTART
    )
    port: int = Field(
        8443,
        ge=0,
        le=65535,
        description="TCP port of the admin API (0 picks a free port).",
        json_schema_extra=RESTART,
    )
    session_minutes: float = Field(
        60.0,
        gt=0,
        le=10080,
        description="How long a session token from a password log-in stays valid after its"
        " last use.",
    )
    ldap_password_check_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="For an administrator whose password is kept in LDAP: how often a session"
        " asks LDAP whether the password changed since sign-in (a change ends the session);"
        " 0 asks on every request.",
    )
    max_sessions: int = Field(
        1000, ge=1, le=1_000_000, description="Most session tokens held at once (oldest go)."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body accepted."
    )
    audit_retention_days: int = Field(
        365,
        ge=0,
        le=36500,
        description="Days the audit log keeps an entry (older ones are dropped daily);"
        " 0 = keep every entry forever.",
    )
    metrics_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1"],
        description="Client networks that may read /metrics without a token.",
    )

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return check_ip(value)

    @field_validator("metrics_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)
