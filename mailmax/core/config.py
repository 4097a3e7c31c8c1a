"""MailMax configuration: one TOML file, validated at start and by ``mailmax config check``.

Every key, its default and what it allows is declared here once; ``docs/configuration.md``
documents the same keys (a test keeps the two in step). Relative paths are relative to the
data directory, and the data directory defaults to the folder holding the config file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mailmax.core.adminsettings import AdminSettings
from mailmax.core.clustersettings import ClusterNodeSettings as ClusterNodeSettings
from mailmax.core.clustersettings import ClusterSettings
from mailmax.core.configbase import RESTART, Section, check_ip, check_networks
from mailmax.core.configbase import ConfigError as ConfigError
from mailmax.core.configbase import needs_restart as needs_restart
from mailmax.core.configbase import parse_networks as parse_networks
from mailmax.core.ldapsettings import LDAPSourceSettings, check_source_names
from mailmax.core.observe.settings import ActivitySettings, LogSettings
from mailmax.core.queuesettings import QueueSettings, SpoolSettings
from mailmax.core.queuesettings import parse_server as parse_server

ServiceName = Literal["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]

#: Services whose socket is TLS from the first byte.
IMPLICIT_TLS_SERVICES = frozenset({"smtps", "pop3s", "imaps"})
SMTP_SERVICES = frozenset({"smtp", "submission", "smtps"})


_Section = Section


class ServerSettings(_Section):
    """Identity, storage locations and process behaviour."""

    hostname: str = Field(
        "localhost",
        description="Name used in greetings, Received headers and bounces.",
        json_schema_extra=RESTART,
    )
    data_dir: str = Field(
        "",
        description="Data directory; empty means the config file's folder.",
        json_schema_extra=RESTART,
    )
    database_url: str = Field(
        "sqlite:///mailmax.db",
        description="SQLAlchemy URL of the directory; relative sqlite paths are in the data dir.",
        json_schema_extra=RESTART,
    )
    log_file: str = Field(
        "mailmax.log", description="Log file, one line per event; empty disables it."
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, le=600, description="How long transactions in flight may finish after SIGTERM."
    )
    blank_password: Literal["fill", "none", "disable"] = Field(
        "disable",
        description="What a blank password means where the domain says `system`: fill = the"
        " next password given becomes it, none = no password needed, disable = no log-in.",
    )
    directory_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=2,
        description="How long directory look-ups are cached (changes show within 2 s).",
        json_schema_extra=RESTART,
    )


class ListenerSettings(_Section):
    """One listening socket."""

    service: ServiceName = Field(
        description="smtp, submission, smtps, pop3, pop3s, imap or imaps.",
        json_schema_extra=RESTART,
    )
    address: str = Field(
        "127.0.0.1", description="IP address to listen on.", json_schema_extra=RESTART
    )
    port: int = Field(
        ge=0, le=65535, description="TCP port (0 picks a free port).", json_schema_extra=RESTART
    )
    default_domain: str = Field("", description="Domain for bare login names on this address.")
    display_name: str = Field("", description="Name shown in this listener's greeting.")
    tls_cert: str = Field("", description="PEM certificate (chain); empty uses [tls].cert.")
    tls_key: str = Field("", description="PEM private key; empty uses [tls].key.")

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return check_ip(value)


class TLSSettings(_Section):
    """The default certificate for STARTTLS and implicit-TLS listeners."""

    cert: str = Field("tls/cert.pem", description="PEM certificate (chain).")
    key: str = Field("tls/key.pem", description="PEM private key.")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Lowest TLS version accepted.")


class SMTPSettings(_Section):
    """Limits and switches of the SMTP service."""

    max_message_size: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest message in bytes (advertised with SIZE)."
    )
    max_recipients: int = Field(
        100, ge=1, le=100000, description="RCPT commands per message (a repeated one counts)."
    )
    session_byte_limit: int = Field(0, ge=0, description="Bytes of mail per session; 0 = no limit.")
    session_message_limit: int = Field(0, ge=0, description="Messages per session; 0 = no limit.")
    client_timeout: float = Field(
        300.0, gt=0, le=3600, description="Idle seconds before disconnect."
    )
    max_command_line: int = Field(
        2048,
        ge=512,
        le=65536,
        description="Longest command line in bytes (RFC 5321: at least 512).",
    )
    max_data_line: int = Field(
        8192, ge=1000, le=1048576, description="Longest line inside DATA in bytes (RFC 5321: 1000)."
    )
    max_errors: int = Field(10, ge=1, le=1000, description="Bad commands before disconnect.")
    allow_vrfy: bool = Field(False, description="Answer VRFY with the user's address.")
    max_hops: int = Field(
        50,
        ge=1,
        le=500,
        description="Most Received headers an arriving message may carry; more: 554 5.4.6 at DATA.",
    )
    allow_plaintext_auth: bool = Field(
        False, description="Offer AUTH on connections without TLS (never do this on the Internet)."
    )
    trusted_networks: list[str] = Field(
        default_factory=list,
        description="Client networks trusted (may relay and send without AUTH); with the"
        " access plugin on, they are access rules tried after the stored ones (`mailmax access"
        " list` shows them): prefer `mailmax access add NETWORK trusted`.",
    )
    pop_before_smtp_minutes: float = Field(
        0.0,
        ge=0,
        le=1440,
        description="POP/IMAP-before-SMTP: a POP3/IMAP log-in lets that IP relay for"
        " this many minutes; 0 = off.",
    )
    require_auth_on: list[ServiceName] = Field(
        default_factory=lambda: ["submission", "smtps"],
        description="Services where MAIL FROM needs an authenticated session.",
    )

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


class POP3Settings(_Section):
    """The POP3 service."""

    allow_plaintext_auth: bool = Field(
        False, description="Allow USER/PASS on connections without TLS (APOP is always allowed)."
    )
    client_timeout: float = Field(
        600.0, gt=0, le=3600, description="Idle seconds before disconnect."
    )
    max_line: int = Field(2048, ge=512, le=65536, description="Longest command line in bytes.")


class IMAPSettings(_Section):
    """The IMAP4 service."""

    allow_plaintext_auth: bool = Field(
        False, description="Allow LOGIN/AUTHENTICATE on connections without TLS."
    )
    login_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds to log in after connecting."
    )
    idle_timeout: float = Field(
        1800.0, ge=60, le=86400, description="Idle seconds after log-in before disconnect."
    )
    max_sessions_per_user: int = Field(
        20, ge=1, le=1000, description="Concurrent sessions per user."
    )
    idle_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often IDLE looks for changes by others."
    )


class ConnectionSettings(_Section):
    """Limits on connections, per client IP and service (SMTP, submission, POP3, IMAP ...)."""

    max_sessions_per_ip: int = Field(
        50,
        ge=0,
        le=100000,
        description="Concurrent sessions from one IP per service; 0 = no limit.",
    )
    max_new_per_ip_per_minute: int = Field(
        120,
        ge=0,
        le=1000000,
        description="New connections from one IP per service in any minute; 0 = no limit.",
    )
    exempt_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Client networks these connection limits never apply to (log-in throttling"
        " still does); with the access plugin on, they are access rules tried after the stored"
        " ones and after trusted_networks (`mailmax access list` shows them).",
    )
    backlog: int = Field(
        1024,
        ge=1,
        le=65535,
        description="Connections the kernel queues for each listener before they are accepted"
        " (the system's somaxconn caps it).",
        json_schema_extra=RESTART,
    )
    send_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a client may leave the server's replies unread (the send buffer"
        " full) before it is disconnected.",
    )

    @field_validator("exempt_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


class AuthSettings(_Section):
    """Failed log-in throttling shared by SMTP AUTH, POP3 and IMAP; the successful log-in cache."""

    failure_delay: float = Field(
        1.0, ge=0, le=60, description="Delay of the reply to the first failure, seconds."
    )
    max_failure_delay: float = Field(
        15.0, ge=0, le=300, description="Longest delay after failures."
    )
    block_after: int = Field(
        10,
        ge=1,
        le=10000,
        description="Failures of one account from one IP before that IP may not try that"
        " account for block_minutes (other addresses still may).",
    )
    ip_block_after: int = Field(
        30,
        ge=1,
        le=100000,
        description="Failures from one IP, whatever the accounts, before that IP is blocked"
        " for block_minutes (except for accounts that logged in from it before).",
    )
    account_delay_after: int = Field(
        5,
        ge=1,
        le=100000,
        description="Failures of one account, from any IP, before every log-in to it from an"
        " address it has not logged in from is delayed (doubling up to max_failure_delay);"
        " an account is never blocked.",
    )
    block_minutes: float = Field(15.0, ge=0, le=1440, description="How long a block lasts.")
    window_minutes: float = Field(
        15.0, gt=0, le=1440, description="How long failures are remembered."
    )
    exempt_networks: list[str] = Field(
        default_factory=list,
        description="Client networks never delayed or blocked by failed log-ins (say, a"
        " webmail host); their failures do not count.",
    )
    cache_seconds: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="How long a successful log-in is remembered, so the next one with the"
        " same password skips the slow password hash; a password change ends it within"
        " [server] directory_cache_seconds; 0 = off.",
    )

    @field_validator("exempt_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)

    @model_validator(mode="after")
    def _delays(self) -> AuthSettings:
        if self.failure_delay > self.max_failure_delay:
            raise ValueError(
                f"failure_delay ({self.failure_delay:g}) must not exceed max_failure_delay"
                f" ({self.max_failure_delay:g})"
            )
        return self


class PluginSettings(_Section):
    """The system-wide plugin list (its order is the hook order) and settings."""

    enabled: list[str] = Field(
        default_factory=list, description="Plugins enabled system-wide, in order."
    )
    directory: str = Field(
        "plugins", description="Folder of local plugins inside the data directory."
    )
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="``[plugins.settings.NAME]`` tables: system-level settings.",
    )


class Settings(_Section):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    tls: TLSSettings = TLSSettings()
    listeners: list[ListenerSettings] = Field(default_factory=list)
    smtp: SMTPSettings = SMTPSettings()
    pop3: POP3Settings = POP3Settings()
    imap: IMAPSettings = IMAPSettings()
    connections: ConnectionSettings = ConnectionSettings()
    auth: AuthSettings = AuthSettings()
    spool: SpoolSettings = SpoolSettings()
    queue: QueueSettings = QueueSettings()
    plugins: PluginSettings = PluginSettings()
    cluster: ClusterSettings = ClusterSettings()
    ldap: dict[str, LDAPSourceSettings] = Field(
        default_factory=dict, description="``[ldap.NAME]`` tables: LDAP user sources."
    )
    log: LogSettings = LogSettings()
    activity: ActivitySettings = ActivitySettings()
    admin: AdminSettings = AdminSettings()

    #: Where the file was read from; set by :func:`load`.
    source: str = Field("", exclude=True)

    @field_validator("ldap")
    @classmethod
    def _ldap_names(cls, sources: dict[str, LDAPSourceSettings]) -> dict[str, LDAPSourceSettings]:
        return check_source_names(sources)

    @model_validator(mode="after")
    def _unique_listeners(self) -> Settings:
        seen: set[tuple[str, int]] = set()
        for listener in self.listeners:
            key = (listener.address, listener.port)
            if listener.port and key in seen:
                raise ValueError(f"two listeners on {listener.address}:{listener.port}")
            seen.add(key)
        return self

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        """The data directory, absolute."""
        if self.server.data_dir:
            return Path(self.server.data_dir).expanduser().resolve()
        if self.source:
            return Path(self.source).resolve().parent
        return Path.cwd()

    def path(self, value: str) -> Path:
        """Resolve ``value`` against the data directory (absolute paths stay as they are)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.data_dir / p

    @property
    def database_url(self) -> str:
        """The directory's SQLAlchemy URL with a relative SQLite path made absolute."""
        url = self.server.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def spool_dir(self) -> Path:
        """The queue directory, absolute."""
        return self.path(self.spool.dir)

    def listeners_for(self, *services: str) -> list[ListenerSettings]:
        """The listeners of the given services, in file order."""
        return [item for item in self.listeners if item.service in services]


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {where!r}: remove it or check its spelling"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{where}: {error['input']!r} is not allowed; use one of {allowed}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {error.get('input')!r})"


def parse(data: dict[str, Any], source: str = "<config>") -> Settings:
    """Validate a config mapping; raise :class:`ConfigError` listing every problem."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{source}: invalid configuration:\n{problems}") from None
    return settings.model_copy(update={"source": source})


def load(path: str | Path) -> Settings:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; create one with `mailmax init --data-dir DIR`"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, str(path.resolve()))


DEFAULT_CONFIG_NAME = "mailmax.toml"
