"""``[spool]`` and ``[queue]``: the durable queue directory, and the queue runner that delivers
what it holds (local delivery, remote delivery, retries and bounces)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from mailmax.core.configbase import RESTART, Section


class SpoolSettings(Section):
    """The durable queue directory."""

    dir: str = Field("queue", description="Queue directory.", json_schema_extra=RESTART)
    fsync: bool = Field(
        True,
        description="fsync files and directories before replying 250.",
        json_schema_extra=RESTART,
    )
    commit_threads: int = Field(
        12,
        ge=1,
        le=64,
        description="Threads of the spool writer process writing messages (and, with sync ="
        " 'files', fsyncing them: concurrent fsyncs share the disk's cache flushes).",
        json_schema_extra=RESTART,
    )
    max_batch: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most messages one group commit covers.",
        json_schema_extra=RESTART,
    )
    sync: Literal["files", "filesystem"] = Field(
        "filesystem",
        description="How a group commit makes messages durable: 'files' fsyncs every file and"
        " directory; 'filesystem' syncs the queue's file system twice per batch (syncfs, Linux;"
        " elsewhere 'files'), far fewer disk cache flushes, but it also writes out whatever else"
        " is pending on that file system, so keep the queue on a file system of its own or a"
        " quiet one. IMAP changes to mailboxes (APPEND, COPY, flags, EXPUNGE) are made durable"
        " the same way, one shared sync of the mail file system per batch with 'filesystem'.",
        json_schema_extra=RESTART,
    )


class QueueSettings(Section):
    """The queue runner: local delivery, remote delivery, retries and bounces."""

    delivery_threads: int = Field(
        4, ge=1, le=64, description="Threads writing into mailboxes.", json_schema_extra=RESTART
    )
    scan_interval: float = Field(
        30.0, gt=0, le=3600, description="Seconds between full queue scans."
    )
    retry_minutes: float = Field(
        15.0, gt=0, description="Retry queue: minutes between attempts of a failed delivery."
    )
    max_retries: int = Field(
        8,
        ge=0,
        description="Retry queue: attempts after the first before a message moves to the"
        " soft-error queue.",
    )
    soft_retry_hours: float = Field(
        4.0, gt=0, description="Soft-error queue: hours between re-sends."
    )
    soft_max_resends: int = Field(
        30,
        ge=0,
        description="Soft-error queue: re-sends before the message bounces; 0 = bounce when"
        " the retries are used up.",
    )
    soft_error_warning: bool = Field(
        True,
        description="Tell the sender (a 'delayed' DSN) when a message enters the soft-error queue.",
    )
    bounce_copy_to_postmaster: bool = Field(
        False, description="Send a copy of every bounce to the postmaster address."
    )
    postmaster: str = Field(
        "", description="The postmaster address; empty = postmaster@ the server hostname."
    )
    max_sessions: int = Field(
        20, ge=1, le=1000, description="Most simultaneous outbound SMTP sessions."
    )
    max_retry_sessions: int = Field(
        10,
        ge=1,
        le=1000,
        description="Most outbound sessions busy with retries of earlier failures.",
    )
    max_per_destination: int = Field(
        5,
        ge=1,
        le=1000,
        description="Most simultaneous sessions to one destination (a domain or a smart host).",
    )
    reuse_seconds: float = Field(
        2.0,
        ge=0,
        le=300,
        description="How long an idle outbound connection waits for the next message to the"
        " same host; 0 = close after each message.",
    )
    max_recipients_per_transaction: int = Field(
        100, ge=1, le=10000, description="Recipients per outbound SMTP transaction."
    )
    remote_port: int = Field(
        25,
        ge=1,
        le=65535,
        description="TCP port of the SMTP servers found by MX look-up (25; other values only"
        " for tests).",
    )
    helo_name: str = Field("", description="Name sent with EHLO; empty = the server hostname.")
    dns_servers: list[str] = Field(
        default_factory=list,
        description='DNS servers to ask instead of the system resolver: "IP",'
        ' "IP:port" or "[IPv6]:port".',
        json_schema_extra=RESTART,
    )
    dns_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for a DNS answer.")
    connect_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for a TCP connection to a remote server."
    )
    smtp_timeout: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Seconds to wait for each reply of a remote SMTP server.",
    )
    ip_versions: Literal["both", "ipv4", "ipv6"] = Field(
        "both", description="Which addresses of a remote server to connect to (IPv4 first)."
    )
    tls: Literal["none", "may", "encrypt", "verify"] = Field(
        "may",
        description="STARTTLS for direct delivery: none, may (when offered), encrypt"
        " (required) or verify (required, with a valid certificate for the MX name).",
    )
    tls_ca_file: str = Field(
        "", description="CA bundle for tls = verify; empty uses the system's trust store."
    )
    local_names: list[str] = Field(
        default_factory=list,
        description="Other names of this server in MX records, besides the hostname (loops,"
        " backup MX).",
    )
    local_addresses: list[str] = Field(
        default_factory=list,
        description="IP addresses of this server as MX hosts resolve to them (loops, backup MX).",
    )
    hold_dir: str = Field(
        "hold",
        description="Directory of the mail held for ETRN domains; may be on a bigger disk.",
        json_schema_extra=RESTART,
    )
    hold_days: float = Field(
        30.0, gt=0, description="Days held mail waits for ETRN before it bounces."
    )

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_server(value, 53)
        return values

    @field_validator("local_addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return values

    @property
    def dns_server_addresses(self) -> list[tuple[str, int]]:
        """``dns_servers`` as (IP, port) pairs."""
        return [parse_server(value, 53) for value in self.dns_servers]


def parse_server(value: str, default_port: int) -> tuple[str, int]:
    """``"IP"``, ``"IP:port"`` or ``"[IPv6]:port"`` as (IP, port); ValueError when malformed."""
    host, port = value.strip(), default_port
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: write an IPv6 server as [address]:port")
        host, port_text = inside, rest[1:]
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{value!r}: bad port {port_text!r}")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address (e.g. 192.0.2.53 or 192.0.2.53:5353)"
        ) from None
    return host, port
