"""SQLDirectory: the blocking directory on SQLite or PostgreSQL (A1, A2, A5, A6, A10, A11, S5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailmax.core.directory.api import (
    AccountType,
    BlankPasswordPolicy,
    DeleteMode,
    Domain,
    DomainType,
    RecipientLookup,
    User,
)


class SQLDirectory:
    """The directory in a SQL database, through SQLAlchemy Core; every call blocks."""

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        blank_password_default: BlankPasswordPolicy = BlankPasswordPolicy.DISABLE,
        base_dir: str | Path | None = None,
    ) -> SQLDirectory:
        """Open the directory at a SQLAlchemy ``url``; upgrade its schema unless told not to."""
        raise NotImplementedError

    def migrate(self) -> None:
        """Upgrade the database to the newest schema version; does nothing when it is current."""
        raise NotImplementedError

    def schema_version(self) -> str:
        """The database's schema version ("" before the first migration)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the database connections."""
        raise NotImplementedError

    def add_domain(self, name: str, mail_dir: str, **fields: Any) -> Domain:
        """Add a domain; ``fields`` are :class:`Domain` fields."""
        raise NotImplementedError

    def get_domain(self, name: str) -> Domain | None:
        """The domain called ``name`` or aliased by it, or None."""
        raise NotImplementedError

    def list_domains(self, name_filter: str = "", type: DomainType | None = None) -> list[Domain]:
        """Domains whose name contains ``name_filter`` (and of ``type``), sorted by name."""
        raise NotImplementedError

    def edit_domain(self, name: str, **fields: Any) -> Domain:
        """Change a domain's fields and return the result."""
        raise NotImplementedError

    def delete_domain(self, name: str, mode: DeleteMode = DeleteMode.DATABASE) -> None:
        """Delete a domain with its users, aliases and overrides (A4)."""
        raise NotImplementedError

    def add_domain_alias(self, alias: str, domain: str) -> None:
        """Make ``alias`` another name of ``domain`` (A3)."""
        raise NotImplementedError

    def remove_domain_alias(self, alias: str) -> None:
        """Remove a domain alias."""
        raise NotImplementedError

    def add_user(
        self, address: str, password: str | None = None, *, keep_clear: bool = False, **fields: Any
    ) -> User:
        """Add a user ``name@domain`` (A5)."""
        raise NotImplementedError

    def get_user(self, address: str) -> User | None:
        """The user at ``address`` (a domain alias may be used), or None."""
        raise NotImplementedError

    def list_users(
        self,
        domain: str | None = None,
        name_filter: str = "",
        account_type: AccountType | None = None,
    ) -> list[User]:
        """Users, optionally of one domain, filtered by name substring and account type."""
        raise NotImplementedError

    def edit_user(self, address: str, **fields: Any) -> User:
        """Change a user's fields and return the result."""
        raise NotImplementedError

    def set_password(
        self, address: str, password: str | None, *, keep_clear: bool | None = None
    ) -> None:
        """Set (or, with None, blank) a user's password (A6)."""
        raise NotImplementedError

    def delete_user(self, address: str, mode: DeleteMode = DeleteMode.DATABASE) -> None:
        """Delete a user (A10)."""
        raise NotImplementedError

    def user_maildir(self, user: User) -> Path:
        """The user's Maildir++ root: ``<domain mail_dir>/<user name>``."""
        raise NotImplementedError

    def add_alias(self, address: str, targets: list[str]) -> None:
        """Add a user alias ``address`` delivering to ``targets`` (A9)."""
        raise NotImplementedError

    def get_alias(self, address: str) -> list[str] | None:
        """The targets of the alias at ``address``, or None."""
        raise NotImplementedError

    def list_aliases(self, domain: str | None = None) -> list[tuple[str, list[str]]]:
        """``(alias address, targets)`` pairs, sorted by address."""
        raise NotImplementedError

    def edit_alias(self, address: str, targets: list[str]) -> None:
        """Replace an alias's targets."""
        raise NotImplementedError

    def delete_alias(self, address: str) -> None:
        """Delete a user alias."""
        raise NotImplementedError

    def set_forward(
        self,
        address: str,
        targets: list[str],
        *,
        enabled: bool = True,
        keep_local_copy: bool = True,
    ) -> None:
        """Set a user's forwarding (A7 storage)."""
        raise NotImplementedError

    def get_forward(self, address: str) -> tuple[bool, list[str], bool] | None:
        """``(enabled, targets, keep_local_copy)`` for a user, or None."""
        raise NotImplementedError

    def get_plugin_overrides(self, plugin: str) -> dict[tuple[str, str], tuple[bool | None, dict]]:
        """Every domain and user override of ``plugin``."""
        raise NotImplementedError

    def set_plugin_override(
        self,
        plugin: str,
        scope_kind: str,
        scope_name: str,
        *,
        enabled: bool | None = None,
        settings: dict | None = None,
    ) -> None:
        """Set a plugin's override for a domain or a user."""
        raise NotImplementedError

    def is_local_domain(self, name: str) -> bool:
        """True when ``name`` is a domain (or domain alias) configured here."""
        raise NotImplementedError

    def lookup_recipient(self, address: str) -> RecipientLookup:
        """What ``address`` is to this system."""
        raise NotImplementedError

    def authenticate(self, login: str, password: str, default_domain: str = "") -> User | None:
        """The user a login name and password identify, or None (A6, A11)."""
        raise NotImplementedError

    def clear_password(self, login: str, default_domain: str = "") -> tuple[User, str] | None:
        """The user and clear password for APOP / CRAM-MD5, when the clear text is kept."""
        raise NotImplementedError

    def record_login(self, address: str, service: str, ip: str) -> None:
        """Note a successful login (S5)."""
        raise NotImplementedError

    def last_login(self, address: str) -> tuple[str, str, float] | None:
        """``(service, ip, unix time)`` of the user's newest login, or None."""
        raise NotImplementedError
