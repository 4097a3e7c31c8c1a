"""The ``[log]`` section: event log files, their rotation and which categories each service
writes; and the ``[activity]`` section: how the activity counters are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailmax.core.observe.events import SERVICES, Category, EventService

#: What every service writes unless told otherwise.
DEFAULT_CATEGORIES: tuple[Category, ...] = (
    "connections",
    "errors",
    "logins",
    "policy",
    "deliveries",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogServiceSettings(_Section):
    """``[log.services.NAME]``: one service's own choice of event categories."""

    categories: list[Category] = Field(
        description="The categories this service writes (replaces `[log] categories` for it)."
    )


class LogSettings(_Section):
    """Event log files: one per service or one combined, rotation, categories, format."""

    files: Literal["off", "combined", "per-service"] = Field(
        "off",
        description="off = no event log files; combined = one `events.log`; per-service = one"
        " `<service>.log` per service (smtp, submission, pop3, imap, queue, admin...).",
    )
    directory: str = Field("log", description="Folder of the event log files.")
    rotate: Literal["never", "size", "hourly", "daily", "weekly", "monthly"] = Field(
        "daily",
        description="When a file is renamed to `.1` and a new one begun: never, when over"
        " `max_bytes`, or at the start of each hour, day, week (Monday) or month, local time.",
    )
    max_bytes: int = Field(
        10_000_000, ge=1000, description='Size at which `rotate = "size"` begins a new file.'
    )
    keep: int = Field(7, ge=1, le=1000, description="How many old files are kept per log.")
    format: Literal["text", "json"] = Field(
        "text", description="text = one readable line per event; json = JSON lines for shippers."
    )
    categories: list[Category] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES),
        description="The categories every service writes: connections, commands, conversation"
        " (commands and replies), errors, logins, data (message contents: a privacy risk),"
        " dns, policy (which plugin refused what), deliveries. Authentication secrets are"
        " never written.",
    )
    services: dict[EventService, LogServiceSettings] = Field(
        default_factory=dict,
        description="`[log.services.NAME]` tables: a service's own `categories`.",
    )

    @field_validator("categories")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    def service_names(self) -> tuple[str, ...]:
        """Every service an event can come from."""
        return SERVICES

    def categories_of(self, service: str) -> list[str]:
        """The categories ``service`` writes."""
        own = self.services.get(service)  # type: ignore[call-overload]
        return list(own.categories if own is not None else self.categories)


class ActivitySettings(_Section):
    """Activity counters (connections, failed log-ins, messages, bytes per service)."""

    enabled: bool = Field(True, description="Count activity; false turns the counters off.")
    save_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="How often the counters are saved to `activity.json` in the data directory"
        " (also at shutdown), so they survive restarts.",
        json_schema_extra={"reload": "restart"},
    )
