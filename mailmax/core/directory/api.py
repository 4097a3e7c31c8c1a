"""The directory's public shapes: domains, users and what an address resolves to.

Implementations: :class:`mailmax.core.directory.sql.SQLDirectory` (SQLite, PostgreSQL; blocking)
and :class:`mailmax.core.directory.cached.AsyncDirectory` (the server's non-blocking, briefly
cached view of it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class DomainType(enum.StrEnum):
    """How mail for a domain is handled."""

    NORMAL = "normal"
    ETRN = "etrn"
    RELAY = "relay"  # relay-to-host: all mail goes to ``delivery_host``
    BACKUP = "backup"  # backup MX with ``backup_priority``
    CLUSTERED = "clustered"


class AccountType(enum.StrEnum):
    """A user's account type."""

    NORMAL = "normal"
    DISABLED = "disabled"
    SPAMTRAP = "spamtrap"


class BlankPasswordPolicy(enum.StrEnum):
    """What a blank password means."""

    FILL = "fill"  # the next password entered at login becomes the password
    NONE = "none"  # no password needed
    DISABLE = "disable"  # the user cannot log in
    SYSTEM = "system"  # (domains only) use the system default


class DeleteMode(enum.StrEnum):
    """What deleting a domain or user does with its mail."""

    DATABASE = "database"  # remove the records, leave the mail directory alone
    ARCHIVE = "archive"  # rename the mail directory with the date
    REMOVE = "remove"  # delete the mail directory and everything in it


@dataclass(frozen=True, slots=True)
class Domain:
    """A domain served by this system and its mailbox defaults."""

    name: str
    mail_dir: str
    type: DomainType = DomainType.NORMAL
    delivery_host: str = ""
    backup_priority: int = 0
    home_node: str = ""
    default_box_mb: int = 0  # 0 = unlimited
    max_users: int = 0
    session_send_mb: int = 0
    session_send_messages: int = 0
    max_message_size: int = 0  # bytes, 0 = system limit
    catch_all: str = ""  # local part of an existing user
    monitor: str = ""  # local part of an existing user
    blank_password: BlankPasswordPolicy = BlankPasswordPolicy.SYSTEM
    over_limit_notice: str = "none"  # none / percent / mb
    over_limit_threshold: int = 0
    aliases: tuple[str, ...] = ()  # domain aliases pointing here
    user_source: str = ""  # "" = the SQL directory, "ldap:NAME" = the LDAP source NAME


@dataclass(frozen=True, slots=True)
class User:
    """A mailbox owner. ``address`` is the canonical ``user@domain``."""

    name: str
    domain: str
    first_name: str = ""
    last_name: str = ""
    account_type: AccountType = AccountType.NORMAL
    smtp_auth_disabled: bool = False
    disk_limit_mb: int = 0  # 0 = domain default / unlimited
    daily_send_messages: int = 0
    daily_send_mb: int = 0
    daily_limits_enabled: bool = False
    max_message_size: int = 0
    virus_check: bool = True
    has_password: bool = True
    clear_password_kept: bool = False
    #: Clustered domains: the node holding the mailbox ("" = the domain's home node).
    home_node: str = ""
    #: True while ``mailmax user move`` copies the mailbox: deliveries wait in the queues.
    moving: bool = False
    #: Addresses the directory forwards the user's mail to (read when ``forward_to_source``
    #: is set: then they replace the forwarding plugin's targets for this user).
    forward_to: tuple[str, ...] = ()
    #: Where ``forward_to`` comes from (``"LDAP source corp, attribute mailRoutingAddress"``);
    #: ``""`` when the forwarding plugin's own settings hold the user's targets.
    forward_to_source: str = ""

    @property
    def address(self) -> str:
        """``name@domain``."""
        return f"{self.name}@{self.domain}"

    @property
    def enabled(self) -> bool:
        """False for disabled accounts."""
        return self.account_type is not AccountType.DISABLED


class Lookup(enum.StrEnum):
    """What a recipient address is to this system."""

    USER = "user"  # a mailbox here
    CATCH_ALL = "catch_all"  # unknown local part, delivered to the domain's catch-all
    ALIAS = "alias"  # a user or domain alias; ``targets`` lists where it goes
    UNKNOWN_USER = "unknown_user"  # local domain, no such user: 550
    DISABLED = "disabled"  # the user exists but is disabled: 550
    NOT_LOCAL = "not_local"  # not one of our domains: relay rules apply


@dataclass(frozen=True, slots=True)
class RecipientLookup:
    """The directory's answer for one address."""

    status: Lookup
    address: str
    domain: Domain | None = None
    user: User | None = None
    targets: tuple[str, ...] = field(default_factory=tuple)

    @property
    def mailbox(self) -> str:
        """The canonical mailbox address, or ``""`` when there is none."""
        return self.user.address if self.user else ""
