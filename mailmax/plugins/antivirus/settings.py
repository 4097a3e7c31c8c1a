"""The antivirus plugin's settings; the scanner, its socket and the commands are system-only."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from mailmax.plugin import SYSTEM_ONLY, Field, PluginSettings

#: What happens to an infected message.
InfectedAction = Literal["refuse", "quarantine", "disinfect"]
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Settings(PluginSettings):
    """Settings of the antivirus plugin (see its README)."""

    scanner: Literal["clamd", "command"] = Field(
        "clamd", description="clamd, or an external command.", json_schema_extra=SYSTEM_ONLY
    )
    clamd_socket: str = Field(
        "/run/clamav/clamd.ctl",
        description="clamd's unix socket path, or host:port.",
        json_schema_extra=SYSTEM_ONLY,
    )
    parallel_scans: int = Field(
        4, ge=1, le=64, description="Scans sent to clamd at once.", json_schema_extra=SYSTEM_ONLY
    )
    command: str = Field(
        "",
        description="External scanner command line; %d: folder of attachments, %M: message file.",
        json_schema_extra=SYSTEM_ONLY,
    )
    infected_statuses: list[int] = Field(
        default_factory=list,
        description="Exit statuses of the command that mean infected.",
        json_schema_extra=SYSTEM_ONLY,
    )
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds a scan may take.")
    max_scan_size: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest message scanned, in bytes."
    )
    max_depth: int = Field(8, ge=1, le=50, description="MIME nesting levels unpacked.")
    scan: Literal["message", "attachments"] = Field(
        "message", description="Scan the whole message or its attachments only."
    )
    inbound_action: InfectedAction = Field(
        "refuse", description="For mail from other servers: refuse, quarantine or disinfect."
    )
    outbound_action: InfectedAction = Field(
        "refuse", description="For mail from authenticated or trusted clients."
    )
    quarantine_mailbox: str = Field(
        "", description="Local mailbox for quarantined mail (empty: the recipient's own)."
    )
    quarantine_folder: str = Field("Quarantine", description="Folder of quarantined mail.")
    alert: str = Field("", description="Address told of every virus found (empty: none).")
    notify_recipient: bool = Field(False, description="Tell local recipients of a virus.")
    notify_sender: bool = Field(
        False, description="Tell the sender of a virus (only a local, authenticated sender)."
    )
    on_failure: Literal["tempfail", "accept"] = Field(
        "tempfail",
        description="Scanner down or failing: 451 (tempfail) or accept unscanned with a header.",
    )
    oversize: Literal["pass", "tempfail"] = Field(
        "pass", description="Message over max_scan_size: pass with a header, or 451."
    )
    header: str = Field(
        "X-Virus-Scanned", description="Header added with the scan result (empty: none)."
    )
    transit: bool = Field(True, description="Scan mail that only passes through.")
    update_command: str = Field(
        "",
        description="Definition update command (e.g. freshclam); empty: none.",
        json_schema_extra=SYSTEM_ONLY,
    )
    update_timeout: float = Field(
        600.0, gt=0, description="Seconds an update may take.", json_schema_extra=SYSTEM_ONLY
    )
    update_at_start: bool = Field(
        False, description="Update when the server starts.", json_schema_extra=SYSTEM_ONLY
    )
    update_daily_at: str = Field(
        "", description="Update daily at HH:MM UTC (empty: no).", json_schema_extra=SYSTEM_ONLY
    )
    update_every_hours: float = Field(
        0.0, ge=0, description="Update every N hours (0: no).", json_schema_extra=SYSTEM_ONLY
    )

    @field_validator("update_daily_at")
    @classmethod
    def _time(cls, value: str) -> str:
        if value and not _TIME.match(value):
            raise ValueError("give a time as HH:MM (00:00 to 23:59), or nothing")
        return value

    @field_validator("alert", "quarantine_mailbox")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and (value.count("@") != 1 or any(c in value for c in " <>\r\n")):
            raise ValueError("give one e-mail address (user@domain), or nothing")
        return value
