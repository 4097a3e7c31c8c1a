"""The directory: domains, users, aliases, forwards, plugin overrides and login tracking.

:class:`SQLDirectory` is the blocking data layer (SQLite or PostgreSQL);
:class:`AsyncDirectory` is the server's non-blocking, briefly cached view of it.
"""

from mailmax.core.directory.api import (
    AccountType,
    BlankPasswordPolicy,
    DeleteMode,
    Domain,
    DomainType,
    Lookup,
    RecipientLookup,
    User,
)
from mailmax.core.directory.errors import (
    AlreadyExists,
    DirectoryError,
    DirectoryUnavailable,
    FieldError,
    NotFound,
)
from mailmax.core.directory.loginnames import (
    check_domain_name,
    check_mail_domain,
    check_user_name,
    parse_login,
    valid_user_name,
)
from mailmax.core.directory.passwords import hash_password, verify_password

_LAZY = {
    "AsyncDirectory": "mailmax.core.directory.cached",
    "SQLDirectory": "mailmax.core.directory.sql",
}


def __getattr__(name: str) -> object:
    """Import the SQL and Twisted layers on first use, so light imports stay light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccountType",
    "AlreadyExists",
    "AsyncDirectory",
    "BlankPasswordPolicy",
    "DeleteMode",
    "DirectoryError",
    "DirectoryUnavailable",
    "Domain",
    "DomainType",
    "FieldError",
    "Lookup",
    "NotFound",
    "RecipientLookup",
    "SQLDirectory",
    "User",
    "check_domain_name",
    "check_mail_domain",
    "check_user_name",
    "hash_password",
    "parse_login",
    "valid_user_name",
    "verify_password",
]
